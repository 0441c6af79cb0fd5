import {
  type CanActivate,
  type ExecutionContext,
  ForbiddenException,
  Injectable,
  Logger,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { UsersService } from '../users/users.service.js';
import type { Role } from '../users/role.js';
import type { RequestWithUser } from './authenticated-user.js';
import { PUBLIC_KEY, ROLES_KEY } from './roles.decorator.js';
import { InvalidTokenError, TokenService } from './token.service.js';

/**
 * The one global guard of the REST API:
 * - `@Public()` routes pass;
 * - every other route needs a valid `Authorization: Bearer <token>` of an existing, enabled user whose role has
 *   not changed since the token was issued (401 otherwise);
 * - and the route must declare `@Roles(...)` including that role (403 otherwise). A route that declares neither
 *   `@Roles` nor `@Public` is refused to everyone: default deny.
 */
@Injectable()
export class RolesGuard implements CanActivate {
  private readonly logger = new Logger(RolesGuard.name);

  constructor(
    private readonly reflector: Reflector,
    private readonly tokens: TokenService,
    private readonly users: UsersService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http') return true; // socket gateways authenticate sites themselves
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(PUBLIC_KEY, targets)) return true;

    const request = context.switchToHttp().getRequest<RequestWithUser>();
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header.trim()) : null;
    if (!match) throw new UnauthorizedException('missing bearer token');
    let claims;
    try {
      claims = await this.tokens.verify(match[1]);
    } catch (error) {
      if (error instanceof InvalidTokenError) throw new UnauthorizedException(error.reason);
      throw error;
    }
    const user = await this.users.findById(claims.sub);
    if (!user || user.disabled) throw new UnauthorizedException('account disabled or deleted');
    if (user.role !== claims.role) throw new UnauthorizedException('role changed since the token was issued');
    request.user = { id: user.id, username: user.username, role: user.role };

    const roles = this.reflector.getAllAndOverride<Role[] | undefined>(ROLES_KEY, targets);
    if (!roles || roles.length === 0) {
      this.logger.warn(
        `refused ${context.getClass().name}.${context.getHandler().name}: the route declares no @Roles or @Public`,
      );
      throw new ForbiddenException('route not open to any role');
    }
    if (!roles.includes(user.role)) throw new ForbiddenException(`requires role ${roles.join(' or ')}`);
    return true;
  }
}
