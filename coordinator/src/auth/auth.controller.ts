import { Body, Controller, Get, HttpCode, Post, UnauthorizedException } from '@nestjs/common';
import { ApiBody, ApiOkResponse, ApiOperation, ApiTags, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { ROLES } from '../users/role.js';
import { toUserView, type UserView } from '../users/user.entity.js';
import { LoginBody } from '../users/users.schemas.js';
import { UsersService } from '../users/users.service.js';
import { type AuthenticatedUser, CurrentUser } from './authenticated-user.js';
import { Public, Roles } from './roles.decorator.js';
import { type IssuedToken, TokenService } from './token.service.js';

@ApiTags('auth')
@Controller('api/auth')
export class AuthController {
  constructor(
    private readonly users: UsersService,
    private readonly tokens: TokenService,
  ) {}

  @Public()
  @Post('login')
  @HttpCode(200)
  @ApiOperation({ summary: 'Exchange a username and password for a coordinator-signed access token' })
  @ApiBody({ schema: openApiSchema(LoginBody) })
  @ApiOkResponse({
    schema: {
      type: 'object',
      properties: {
        accessToken: { type: 'string' },
        tokenType: { type: 'string', enum: ['Bearer'] },
        expiresIn: { type: 'integer', description: 'seconds' },
        expiresAt: { type: 'string', format: 'date-time' },
        user: { type: 'object' },
      },
    },
  })
  @ApiUnauthorizedResponse({ description: 'wrong username or password, or a disabled account' })
  async login(@Body({ schema: LoginBody }) body: LoginBody): Promise<IssuedToken & { user: UserView }> {
    const user = await this.users.authenticate(body.username, body.password);
    if (!user) throw new UnauthorizedException('invalid username or password');
    return { ...(await this.tokens.issue(user)), user: toUserView(user) };
  }

  @Roles(...ROLES)
  @Get('me')
  @ApiOperation({ summary: 'The account behind the bearer token' })
  me(@CurrentUser() user: AuthenticatedUser): AuthenticatedUser {
    return user;
  }
}
