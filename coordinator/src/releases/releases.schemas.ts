import { z } from 'zod';

export const CreateReleaseBody = z.strictObject({ auditId: z.uuid() });
export type CreateReleaseBody = z.infer<typeof CreateReleaseBody>;
