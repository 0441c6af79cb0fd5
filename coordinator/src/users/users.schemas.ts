import { z } from 'zod';
import { ROLES } from './role.js';

export const MIN_PASSWORD_LENGTH = 12;

export const Username = z
  .string()
  .trim()
  .toLowerCase()
  .regex(/^[a-z0-9][a-z0-9._-]{1,63}$/, 'username: 2–64 characters of a-z, 0-9, ".", "_", "-"');

export const NewPassword = z
  .string()
  .min(MIN_PASSWORD_LENGTH, `password: at least ${MIN_PASSWORD_LENGTH} characters`)
  .max(1024, 'password: at most 1024 characters');

export const RoleName = z.enum(ROLES);

export const CreateUserBody = z.strictObject({ username: Username, role: RoleName, password: NewPassword });
export type CreateUserBody = z.infer<typeof CreateUserBody>;

export const LoginBody = z.strictObject({
  username: z.string().min(1).max(64),
  password: z.string().min(1).max(1024),
});
export type LoginBody = z.infer<typeof LoginBody>;
