import { z } from 'zod';

export const SiteName = z
  .string()
  .trim()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'name: 1–64 characters of A-Z, a-z, 0-9, ".", "_", "-"');

export const CreateSiteBody = z.strictObject({ name: SiteName });
export type CreateSiteBody = z.infer<typeof CreateSiteBody>;

/** A compact JWS is three base64url parts; 16 KiB is far more than a proof needs. */
export const EnrollBody = z.strictObject({
  proof: z
    .string()
    .max(16 * 1024)
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'proof must be a compact JWS'),
});
export type EnrollBody = z.infer<typeof EnrollBody>;
