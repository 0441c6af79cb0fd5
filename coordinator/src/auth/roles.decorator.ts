import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';
import type { Role } from '../users/role.js';

export const ROLES_KEY = 'fedsynth:roles';
export const PUBLIC_KEY = 'fedsynth:public';

/**
 * The roles allowed on a route (or on every route of a controller). Every REST route must carry either
 * `@Roles(...)` or `@Public()`: the global {@link RolesGuard} refuses the others (default deny).
 */
export function Roles(...roles: [Role, ...Role[]]): MethodDecorator & ClassDecorator {
  return applyDecorators(
    SetMetadata(ROLES_KEY, roles),
    ApiBearerAuth(),
    ApiUnauthorizedResponse({ description: 'missing, invalid or expired token' }),
    ApiForbiddenResponse({ description: `allowed roles: ${roles.join(', ')}` }),
  );
}

/** A route open to anyone (login, enrolment, health, metrics). */
export function Public(): MethodDecorator & ClassDecorator {
  return SetMetadata(PUBLIC_KEY, true);
}
