import {
  Body,
  Controller,
  Get,
  HttpCode,
  Inject,
  Logger,
  Param,
  ParseUUIDPipe,
  Post,
  UnauthorizedException,
} from '@nestjs/common';
import {
  ApiBody,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import { type AuthenticatedUser, CurrentUser } from '../auth/authenticated-user.js';
import { Public, Roles } from '../auth/roles.decorator.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { EnrollmentRefusedError } from './enrollment-proof.verifier.js';
import { SITE_STATUSES, toSiteView, type SiteView } from './site.entity.js';
import { CreateSiteBody, EnrollBody } from './sites.schemas.js';
import { type MintedEnrollment, SitesService } from './sites.service.js';

const SiteViewSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    name: { type: 'string' },
    status: { type: 'string', enum: [...SITE_STATUSES] },
    kid: { type: 'string', nullable: true, description: 'RFC 7638 thumbprint of the site key' },
    publicJwk: { type: 'object', nullable: true },
    createdAt: { type: 'string', format: 'date-time' },
    enrolledAt: { type: 'string', format: 'date-time', nullable: true },
    revokedAt: { type: 'string', format: 'date-time', nullable: true },
    lastSeenAt: { type: 'string', format: 'date-time', nullable: true },
  },
};

const MintedSchema = {
  type: 'object',
  properties: {
    site: SiteViewSchema,
    enrollmentToken: { type: 'string', description: 'one-time token, shown only in this response' },
    expiresAt: { type: 'string', format: 'date-time' },
  },
};

interface MintedView {
  site: SiteView;
  enrollmentToken: string;
  expiresAt: string;
}

function toMintedView(minted: MintedEnrollment): MintedView {
  return {
    site: toSiteView(minted.site),
    enrollmentToken: minted.enrollmentToken,
    expiresAt: minted.expiresAt.toISOString(),
  };
}

@ApiTags('sites')
@Controller('api/sites')
export class SitesController {
  private readonly logger = new Logger(SitesController.name);

  constructor(
    private readonly sites: SitesService,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  @Roles('admin')
  @Post()
  @ApiOperation({ summary: 'Create a pending site and its one-time enrolment token' })
  @ApiBody({ schema: openApiSchema(CreateSiteBody) })
  @ApiCreatedResponse({ schema: MintedSchema })
  @ApiConflictResponse({ description: 'a site with this name exists' })
  async create(
    @Body({ schema: CreateSiteBody }) body: CreateSiteBody,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<MintedView> {
    return toMintedView(await this.sites.create(body.name, user.id));
  }

  @Roles('admin', 'auditor')
  @Get()
  @ApiOperation({ summary: 'List sites' })
  @ApiOkResponse({ schema: { type: 'array', items: SiteViewSchema } })
  async list(): Promise<SiteView[]> {
    return (await this.sites.list()).map(toSiteView);
  }

  @Roles('admin', 'auditor')
  @Get(':id')
  @ApiOperation({ summary: 'One site' })
  @ApiOkResponse({ schema: SiteViewSchema })
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<SiteView> {
    return toSiteView(await this.sites.get(id));
  }

  @Roles('admin')
  @Post(':id/revoke')
  @HttpCode(200)
  @ApiOperation({ summary: 'Revoke a site: its key stops working and its connections are closed at once' })
  @ApiOkResponse({ schema: SiteViewSchema })
  async revoke(@Param('id', ParseUUIDPipe) id: string): Promise<SiteView> {
    return toSiteView(await this.sites.revoke(id));
  }

  @Roles('admin')
  @Post(':id/enrollment-token')
  @ApiOperation({
    summary: 'A new one-time enrolment token for a pending site (earlier unused ones stop working)',
  })
  @ApiCreatedResponse({ schema: MintedSchema })
  @ApiConflictResponse({ description: 'the site is not pending' })
  async reissue(@Param('id', ParseUUIDPipe) id: string): Promise<MintedView> {
    return toMintedView(await this.sites.reissueToken(id));
  }

  @Public()
  @Post('enroll')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Enrol a site key',
    description:
      'proof: compact JWS (EdDSA) signed by the new site key; protected header { alg, jwk, kid = RFC 7638 ' +
      'thumbprint of jwk }; payload { enrollmentToken, siteId, aud = coordinator audience, iat, exp ≤ iat + 300 }.',
  })
  @ApiBody({ schema: openApiSchema(EnrollBody) })
  @ApiOkResponse({
    schema: { type: 'object', properties: { site: SiteViewSchema, audience: { type: 'string' } } },
  })
  @ApiUnauthorizedResponse({ description: 'invalid proof, or an unknown, used or expired token' })
  async enroll(
    @Body({ schema: EnrollBody }) body: EnrollBody,
  ): Promise<{ site: SiteView; audience: string }> {
    try {
      const site = await this.sites.enroll(body.proof);
      return { site: toSiteView(site), audience: this.config.audience };
    } catch (error) {
      if (error instanceof EnrollmentRefusedError) {
        this.logger.warn(`enrolment refused: ${error.reason}`);
        throw new UnauthorizedException(`enrolment refused: ${error.reason}`);
      }
      throw error;
    }
  }
}
