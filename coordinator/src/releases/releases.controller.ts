import {
  Body,
  Controller,
  ForbiddenException,
  Get,
  HttpCode,
  Param,
  ParseUUIDPipe,
  Post,
  Res,
  StreamableFile,
} from '@nestjs/common';
import { ApiBody, ApiConflictResponse, ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { ReleaseCard } from '@fedsynth/common/release/index';
import { type AuthenticatedUser, CurrentUser } from '../auth/authenticated-user.js';
import { Roles } from '../auth/roles.decorator.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { toReleaseView, type ReleaseView } from './release.entity.js';
import { CreateReleaseBody } from './releases.schemas.js';
import { ReleasesService } from './releases.service.js';

/** Released data sets: admins create them from approved audits; researchers list and download ready ones. */
@ApiTags('releases')
@Controller('api/releases')
export class ReleasesController {
  constructor(private readonly releases: ReleasesService) {}

  @Roles('admin')
  @Post()
  @HttpCode(202)
  @ApiOperation({
    summary: 'Release an approved audit (built in the background; poll GET /api/releases/:id)',
  })
  @ApiBody({ schema: openApiSchema(CreateReleaseBody) })
  @ApiConflictResponse({ description: 'the audit is not approved, or has a release already' })
  async create(
    @Body({ schema: CreateReleaseBody }) body: CreateReleaseBody,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<ReleaseView> {
    return toReleaseView(await this.releases.create(body.auditId, user.id));
  }

  @Roles('researcher', 'admin', 'auditor')
  @Get()
  @ApiOperation({ summary: 'Ready releases, oldest first' })
  async list(): Promise<ReleaseView[]> {
    return (await this.releases.list({ readyOnly: true })).map(toReleaseView);
  }

  @Roles('researcher', 'admin', 'auditor')
  @Get(':id')
  @ApiOperation({
    summary: 'A release with its dataset card and sha256 manifest (admins also see unfinished ones)',
  })
  async get(
    @Param('id', ParseUUIDPipe) id: string,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<ReleaseView & { card?: ReleaseCard; manifest?: string }> {
    const release = user.role === 'admin' ? await this.releases.get(id) : await this.releases.getReady(id);
    if (release.state !== 'ready') return toReleaseView(release);
    return { ...toReleaseView(release), ...(await this.releases.card(release)) };
  }

  @Roles('researcher', 'admin')
  @Get(':id/download')
  @ApiOperation({ summary: 'The release as a tar archive, streamed (X-Manifest-SHA256 names its manifest)' })
  @ApiProduces('application/x-tar')
  async download(
    @Param('id', ParseUUIDPipe) id: string,
    @Res({ passthrough: true }) res: { setHeader(name: string, value: string): void },
  ): Promise<StreamableFile> {
    const { release, name, stream } = await this.releases.archive(id);
    if (!release.manifestSha256) throw new ForbiddenException(`release ${id} has no manifest`);
    res.setHeader('x-manifest-sha256', release.manifestSha256);
    return new StreamableFile(stream, {
      type: 'application/x-tar',
      disposition: `attachment; filename="${name}.tar"`,
    });
  }
}
