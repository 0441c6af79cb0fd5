import { Body, Controller, Get, HttpCode, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiCreatedResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiTags,
} from '@nestjs/swagger';
import { type AuthenticatedUser, CurrentUser } from '../auth/authenticated-user.js';
import { Roles } from '../auth/roles.decorator.js';
import { openApiSchema } from '../openapi/openapi-schema.js';
import { CreateStudyBody } from './studies.schemas.js';
import { StudiesService, type StudyView } from './studies.service.js';
import { ROUND_STATES, STUDY_MODES, STUDY_STATES } from './study.entity.js';

const sha = { type: 'string', nullable: true, description: 'sha256 of a blob on the coordinator' };

const StudyViewSchema = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    name: { type: 'string' },
    model: { type: 'object', description: '{ task: generator | segmenter, model, profile }' },
    mode: { type: 'string', enum: [...STUDY_MODES] },
    rounds: { type: 'integer' },
    localSteps: { type: 'integer' },
    batchSize: { type: 'integer' },
    samplesPerSite: { type: 'integer' },
    minSites: { type: 'integer' },
    roundTimeoutMs: { type: 'integer' },
    maxSeconds: { type: 'number', nullable: true },
    siteIds: { type: 'array', items: { type: 'string', format: 'uuid' } },
    seed: { type: 'integer' },
    truncationPsi: { type: 'number' },
    ddimSteps: { type: 'integer' },
    data: { type: 'object', nullable: true },
    syntheticPoolSha256: sha,
    state: { type: 'string', enum: [...STUDY_STATES] },
    currentRound: { type: 'integer' },
    error: { type: 'string', nullable: true },
    modelSha256: { ...sha, description: "segmenter studies: the final global weights ('segmenter' blob)" },
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' },
    finishedAt: { type: 'string', format: 'date-time', nullable: true },
    roundHistory: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          index: { type: 'integer' },
          state: { type: 'string', enum: [...ROUND_STATES] },
          startedAt: { type: 'string', format: 'date-time' },
          deadline: { type: 'string', format: 'date-time' },
          closedAt: { type: 'string', format: 'date-time', nullable: true },
          participants: { type: 'array', items: { type: 'string', format: 'uuid' } },
          contributors: { type: 'array', items: { type: 'string', format: 'uuid' } },
          inputWeightsSha256: sha,
          inputEmaSha256: sha,
          outputWeightsSha256: sha,
          outputEmaSha256: sha,
          contributions: {
            type: 'object',
            description:
              'by site id: { jobId, weightsSha256, emaSha256, trainSlices, steps, finalLoss, seconds }',
          },
        },
      },
    },
    pool: {
      type: 'object',
      properties: {
        total: { type: 'integer', description: 'pooled synthetic slices' },
        sites: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              siteId: { type: 'string', format: 'uuid' },
              jobId: { type: 'string', format: 'uuid' },
              sha256: { type: 'string' },
              size: { type: 'integer' },
              count: { type: 'integer' },
              generator: { type: 'string' },
              seed: { type: 'integer' },
              round: { type: 'integer' },
              createdAt: { type: 'string', format: 'date-time' },
            },
          },
        },
      },
    },
  },
};

@ApiTags('studies')
@Controller('api/studies')
export class StudiesController {
  constructor(private readonly studies: StudiesService) {}

  @Roles('admin')
  @Post()
  @ApiOperation({
    summary: 'Create and start a study (federated training rounds; generators then sample at every site)',
  })
  @ApiBody({ schema: openApiSchema(CreateStudyBody) })
  @ApiCreatedResponse({ schema: StudyViewSchema })
  @ApiBadRequestResponse({ description: 'invalid body, unknown or inactive site, minSites > sites, ...' })
  async create(
    @Body({ schema: CreateStudyBody }) body: CreateStudyBody,
    @CurrentUser() user: AuthenticatedUser,
  ): Promise<StudyView> {
    return this.studies.view(await this.studies.create(body, user.id));
  }

  @Roles('admin', 'auditor')
  @Get()
  @ApiOperation({ summary: 'List studies with their rounds and pool' })
  @ApiOkResponse({ schema: { type: 'array', items: StudyViewSchema } })
  async list(): Promise<StudyView[]> {
    const studies = await this.studies.list();
    return Promise.all(studies.map((s) => this.studies.view(s)));
  }

  @Roles('admin', 'auditor')
  @Get(':id')
  @ApiOperation({ summary: 'One study: state, rounds, contributions, pool, final model' })
  @ApiOkResponse({ schema: StudyViewSchema })
  @ApiNotFoundResponse({ description: 'no such study' })
  async get(@Param('id', ParseUUIDPipe) id: string): Promise<StudyView> {
    return this.studies.view(await this.studies.get(id));
  }

  @Roles('admin')
  @Post(':id/cancel')
  @HttpCode(200)
  @ApiOperation({
    summary: 'Cancel a running study and its unfinished jobs (a finished study is left as is)',
  })
  @ApiOkResponse({ schema: StudyViewSchema })
  @ApiNotFoundResponse({ description: 'no such study' })
  async cancel(@Param('id', ParseUUIDPipe) id: string): Promise<StudyView> {
    return this.studies.view(await this.studies.cancel(id));
  }
}
