import { Body, Controller, Get, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBody, ApiCreatedResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { type AuthenticatedUser, CurrentUser } from '../auth/authenticated-user.js';
import { Roles } from '../auth/roles.decorator.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import type { Evaluation, SegmenterRun, UtilityRun } from './evaluation.entities.js';
import { EvaluateBody, TrainOnPoolBody, UtilityBody } from './evaluations.schemas.js';
import { EvaluationsService } from './evaluations.service.js';
import { SegmentationService } from './segmentation.service.js';
import type { UtilityReport } from './utility-report.js';
import { UtilityService } from './utility.service.js';

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function toSegmenterRunView(r: SegmenterRun) {
  return {
    ...r,
    createdAt: r.createdAt.toISOString(),
    startedAt: iso(r.startedAt),
    finishedAt: iso(r.finishedAt),
  };
}

export function toEvaluationView(e: Evaluation) {
  return {
    ...e,
    createdAt: e.createdAt.toISOString(),
    updatedAt: e.updatedAt.toISOString(),
    finishedAt: iso(e.finishedAt),
  };
}

export function toUtilityRunView(u: UtilityRun) {
  return {
    ...u,
    createdAt: u.createdAt.toISOString(),
    updatedAt: u.updatedAt.toISOString(),
    finishedAt: iso(u.finishedAt),
  };
}

/** Central segmentation, federated evaluation and the paper's comparison (admin starts, admin/auditor read). */
@ApiTags('evaluations')
@Controller('api')
export class EvaluationsController {
  constructor(
    private readonly segmentation: SegmentationService,
    private readonly evaluations: EvaluationsService,
    private readonly utility: UtilityService,
  ) {}

  @Roles('admin')
  @Post('studies/:id/segmenter-runs')
  @ApiOperation({ summary: "Queue a central segmenter training on the study's synthetic pool" })
  @ApiBody({ schema: openApiSchema(TrainOnPoolBody) })
  @ApiCreatedResponse({ description: 'the queued run' })
  async trainOnPool(@Param('id') studyId: string, @Body({ schema: TrainOnPoolBody }) body: TrainOnPoolBody) {
    return toSegmenterRunView(await this.segmentation.trainOnPool(studyId, body));
  }

  @Roles('admin', 'auditor')
  @Get('studies/:id/segmenter-runs')
  @ApiOperation({ summary: "The study's central segmenter runs" })
  async listRuns(@Param('id') studyId: string) {
    return (await this.segmentation.list(studyId)).map(toSegmenterRunView);
  }

  @Roles('admin', 'auditor')
  @Get('segmenter-runs/:id')
  @ApiOperation({ summary: 'One central segmenter run' })
  async getRun(@Param('id', ParseUUIDPipe) id: string) {
    return toSegmenterRunView(await this.segmentation.get(id));
  }

  @Roles('admin')
  @Post('evaluations')
  @ApiOperation({ summary: 'Evaluate a segmenter at every active site (metrics only come back)' })
  @ApiBody({ schema: openApiSchema(EvaluateBody) })
  async evaluate(@Body({ schema: EvaluateBody }) body: EvaluateBody) {
    const target =
      'segmenterRunId' in body
        ? { segmenterRunId: body.segmenterRunId }
        : { weightsSha256: body.weightsSha256, studyId: body.studyId };
    return toEvaluationView(await this.evaluations.evaluate(target, body.label));
  }

  @Roles('admin', 'auditor')
  @Get('evaluations/:id')
  @ApiOperation({ summary: 'One evaluation: per-site state and summaries, and the means over all subjects' })
  async getEvaluation(@Param('id', ParseUUIDPipe) id: string) {
    return toEvaluationView(await this.evaluations.get(id));
  }

  @Roles('admin')
  @Post('studies/:id/utility')
  @ApiOperation({
    summary:
      'Run the comparison: central training on the pool, FedAvg real / both / mixing studies, evaluations',
  })
  @ApiBody({ schema: openApiSchema(UtilityBody) })
  @ApiCreatedResponse({ description: 'the started utility run' })
  async startUtility(
    @Param('id') studyId: string,
    @Body({ schema: UtilityBody }) body: UtilityBody,
    @CurrentUser() user: AuthenticatedUser,
  ) {
    const { batch, ...rest } = body;
    return toUtilityRunView(await this.utility.start(studyId, { ...rest, batchSize: batch }, user.id));
  }

  @Roles('admin', 'auditor')
  @Get('studies/:id/utility')
  @ApiOperation({ summary: "The study's comparison table (Dice synthetic / real / both, ratios, mixing)" })
  @ApiOkResponse({ description: 'UtilityReport' })
  report(@Param('id') studyId: string): Promise<UtilityReport> {
    return this.utility.report(studyId);
  }
}
