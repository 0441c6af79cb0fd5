import {
  Body,
  Controller,
  Get,
  HttpCode,
  NotFoundException,
  Param,
  ParseUUIDPipe,
  Post,
  Query,
  Res,
  StreamableFile,
} from '@nestjs/common';
import {
  ApiBody,
  ApiConflictResponse,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiTags,
} from '@nestjs/swagger';
import { type AuthenticatedUser, CurrentUser } from '../auth/authenticated-user.js';
import { Roles } from '../auth/roles.decorator.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { type AuditReport, toAuditReport } from './audit-report.js';
import { AuditDecisionBody, StartAuditBody } from './audits.schemas.js';
import { AuditsService } from './audits.service.js';

/** The memorization audit: admins start and decide; auditors read. Researchers never see audits. */
@ApiTags('audits')
@Controller('api/audits')
export class AuditsController {
  constructor(private readonly audits: AuditsService) {}

  @Roles('admin')
  @Post()
  @ApiOperation({
    summary:
      "Audit a done study's pool: build the candidate pool and send an 'audit' job to every active site",
  })
  @ApiBody({ schema: openApiSchema(StartAuditBody) })
  @ApiConflictResponse({
    description:
      'the study is not a done generator study, has no pooled samples, or a contributing site cannot audit (named)',
  })
  async start(
    @Body({ schema: StartAuditBody }) body: StartAuditBody,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<AuditReport> {
    return toAuditReport(await this.audits.start(body.studyId, body.margin, user.id));
  }

  @Roles('admin', 'auditor')
  @Get()
  @ApiOperation({ summary: 'List audits (optionally of one study)' })
  async list(@Query('studyId') studyId?: string): Promise<AuditReport[]> {
    return (await this.audits.list(studyId ? { studyId } : {})).map(toAuditReport);
  }

  @Roles('admin', 'auditor')
  @Get(':id')
  @ApiOperation({
    summary: 'The audit report: per-site score and reference histograms, thresholds, withheld candidates',
  })
  @ApiOkResponse({ description: 'the report' })
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<AuditReport> {
    return toAuditReport(await this.audits.get(id));
  }

  @Roles('admin', 'auditor')
  @Get(':id/candidates/:file')
  @ApiOperation({
    summary: 'A PNG of one synthetic candidate (`<index>.png`): T1, T2, FLAIR, T1ce, annotation',
  })
  @ApiProduces('image/png')
  async candidate(
    @Param('id', ParseUUIDPipe) id: string,
    @Param('file') file: string,
    @Res({ passthrough: true }) res: { setHeader(name: string, value: string): void },
  ): Promise<StreamableFile> {
    const match = /^(\d{1,9})\.png$/.exec(file);
    if (!match) throw new NotFoundException(`no candidate image ${file}; ask for <index>.png`);
    const png = await this.audits.candidatePng(id, Number(match[1]));
    res.setHeader('cache-control', 'private, max-age=3600');
    return new StreamableFile(png, { type: 'image/png', length: png.length });
  }

  @Roles('admin')
  @Post(':id/decision')
  @HttpCode(200)
  @ApiOperation({ summary: 'Approve or reject a scored audit (final; recorded with who and when)' })
  @ApiBody({ schema: openApiSchema(AuditDecisionBody) })
  @ApiConflictResponse({ description: 'the audit is not scored (still scoring, failed, or decided already)' })
  async decide(
    @Param('id', ParseUUIDPipe) id: string,
    @Body({ schema: AuditDecisionBody }) body: AuditDecisionBody,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<AuditReport> {
    return toAuditReport(await this.audits.decide(id, body.approve, body.comment ?? null, user.id));
  }
}
