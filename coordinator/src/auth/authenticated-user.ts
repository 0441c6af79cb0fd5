import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { Role } from '../users/role.js';

/** The user behind a request, attached by the RolesGuard. */
export interface AuthenticatedUser {
  id: string;
  username: string;
  role: Role;
}

export interface RequestWithUser {
  headers: Record<string, string | string[] | undefined>;
  user?: AuthenticatedUser;
}

/** Parameter decorator: the authenticated user of the current request. */
export const CurrentUser = createParamDecorator(
  (_data: unknown, ctx: ExecutionContext): AuthenticatedUser | undefined =>
    ctx.switchToHttp().getRequest<RequestWithUser>().user,
);
