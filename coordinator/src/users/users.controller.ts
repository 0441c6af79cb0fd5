import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Roles } from '../auth/roles.decorator.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { CreateUserBody } from './users.schemas.js';
import { toUserView, type UserView } from './user.entity.js';
import { UsersService } from './users.service.js';

const UserViewSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    username: { type: 'string' },
    role: { type: 'string', enum: ['admin', 'auditor', 'researcher'] },
    disabled: { type: 'boolean' },
    createdAt: { type: 'string', format: 'date-time' },
  },
};

@ApiTags('users')
@Roles('admin')
@Controller('api/users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get()
  @ApiOperation({ summary: 'List user accounts' })
  @ApiOkResponse({ schema: { type: 'array', items: UserViewSchema } })
  async list(): Promise<UserView[]> {
    return (await this.users.list()).map(toUserView);
  }

  @Post()
  @ApiOperation({ summary: 'Create a user account' })
  @ApiBody({ schema: openApiSchema(CreateUserBody) })
  @ApiCreatedResponse({ schema: UserViewSchema })
  async create(@Body({ schema: CreateUserBody }) body: CreateUserBody): Promise<UserView> {
    return toUserView(await this.users.create(body));
  }

  @Post(':id/disable')
  @HttpCode(200)
  @ApiOperation({ summary: 'Disable a user account (its tokens stop working at once)' })
  @ApiOkResponse({ schema: UserViewSchema })
  async disable(@Param('id', ParseUUIDPipe) id: string): Promise<UserView> {
    return toUserView(await this.users.setDisabled(id, true));
  }

  @Post(':id/enable')
  @HttpCode(200)
  @ApiOperation({ summary: 'Enable a user account again' })
  @ApiOkResponse({ schema: UserViewSchema })
  async enable(@Param('id', ParseUUIDPipe) id: string): Promise<UserView> {
    return toUserView(await this.users.setDisabled(id, false));
  }
}
