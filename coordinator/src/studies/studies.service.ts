import { BadRequestException, Injectable, Logger, NotFoundException } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { type Repository } from 'typeorm';
import { BlobsService } from '../blobs/blobs.service.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { SitesService } from '../sites/sites.service.js';
import { CreateStudyBody, type CreateStudyDto } from './studies.schemas.js';
import { type FinalWeights, StudyOrchestrator } from './study-orchestrator.js';
import { PoolSample, Study, StudyRound, type RoundContribution } from './study.entity.js';

export interface StudyRoundView {
  index: number;
  state: StudyRound['state'];
  startedAt: string;
  deadline: string;
  closedAt: string | null;
  participants: string[];
  contributors: string[];
  inputWeightsSha256: string | null;
  inputEmaSha256: string | null;
  outputWeightsSha256: string | null;
  outputEmaSha256: string | null;
  contributions: Record<string, RoundContribution>;
}

export interface PoolSampleView {
  siteId: string;
  jobId: string;
  sha256: string;
  size: number;
  count: number;
  generator: string;
  seed: number;
  round: number;
  createdAt: string;
}

export interface StudyView {
  id: string;
  name: string;
  model: Study['model'];
  mode: Study['mode'];
  rounds: number;
  localSteps: number;
  batchSize: number;
  samplesPerSite: number;
  minSites: number;
  roundTimeoutMs: number;
  maxSeconds: number | null;
  siteIds: string[];
  seed: number;
  truncationPsi: number;
  ddimSteps: number;
  data: Study['data'];
  syntheticPoolSha256: string | null;
  state: Study['state'];
  currentRound: number;
  error: string | null;
  /** segmenter studies: the final global weights (a 'segmenter' blob) */
  modelSha256: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
  roundHistory: StudyRoundView[];
  pool: { total: number; sites: PoolSampleView[] };
}

/**
 * Studies: creation (validated, then started by the orchestrator), status, pool and final weights. Other modules
 * call {@link create} to start studies of their own (e.g. the FedAvg segmenter baselines).
 */
@Injectable()
export class StudiesService {
  private readonly logger = new Logger(StudiesService.name);

  constructor(
    @InjectRepository(Study) private readonly studies: Repository<Study>,
    @InjectRepository(StudyRound) private readonly rounds: Repository<StudyRound>,
    @InjectRepository(PoolSample) private readonly pool: Repository<PoolSample>,
    private readonly sites: SitesService,
    private readonly blobs: BlobsService,
    private readonly orchestrator: StudyOrchestrator,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /** Validates and stores a study, then opens its first round. BadRequestException names what is wrong. */
  async create(input: CreateStudyBody | CreateStudyDto, createdBy: string | null = null): Promise<Study> {
    const parsed = CreateStudyBody.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new BadRequestException(`${issue.path.join('.') || 'study'}: ${issue.message}`);
    }
    const dto = parsed.data;
    const bad = (message: string) => new BadRequestException(message);
    if (new Set(dto.siteIds).size !== dto.siteIds.length) throw bad('siteIds: a site is listed twice');
    for (const siteId of dto.siteIds) {
      const site = await this.sites.get(siteId).catch(() => undefined);
      if (!site) throw bad(`siteIds: no site ${siteId}`);
      if (site.status !== 'active') throw bad(`siteIds: site ${site.name} is ${site.status}, not active`);
    }
    const minSites = dto.minSites ?? dto.siteIds.length;
    if (minSites > dto.siteIds.length) {
      throw bad(`minSites (${minSites}) exceeds the number of selected sites (${dto.siteIds.length})`);
    }
    if (dto.model.task === 'generator') {
      if (dto.samplesPerSite <= 0) throw bad('samplesPerSite must be > 0 for a generator study');
      if (dto.data) throw bad('data (the training mix) applies to segmenter studies only');
      if (dto.syntheticPoolSha256) throw bad('syntheticPoolSha256 applies to segmenter studies only');
    } else {
      if (dto.samplesPerSite !== 0) throw bad('samplesPerSite must be 0 for a segmenter study');
      const needsPool = dto.data && (dto.data.both || dto.data.syntheticShare > 0);
      if (needsPool && !dto.syntheticPoolSha256) {
        throw bad('data mixes synthetic slices in: syntheticPoolSha256 (the pool) is required');
      }
    }
    if (dto.syntheticPoolSha256 && !(await this.blobs.stat(dto.syntheticPoolSha256))) {
      throw bad(`syntheticPoolSha256: blob ${dto.syntheticPoolSha256} is not stored on the coordinator`);
    }
    const now = this.clock.now();
    const study = this.studies.create({
      id: this.random.uuid(),
      name: dto.name,
      model: dto.model,
      mode: dto.mode,
      rounds: dto.rounds,
      localSteps: dto.localSteps,
      batchSize: dto.batchSize,
      samplesPerSite: dto.samplesPerSite,
      minSites,
      roundTimeoutMs: dto.roundTimeoutMs,
      maxSeconds: dto.maxSeconds ?? null,
      siteIds: dto.siteIds,
      seed: dto.seed,
      truncationPsi: dto.truncationPsi,
      ddimSteps: dto.ddimSteps,
      data: dto.data ?? null,
      syntheticPoolSha256: dto.syntheticPoolSha256 ?? null,
      state: 'running',
      currentRound: 0,
      samplingSiteIds: null,
      modelSha256: null,
      error: null,
      createdBy,
      createdAt: now,
      updatedAt: now,
      finishedAt: null,
    });
    await this.studies.insert(study as never);
    this.logger.log(
      `study ${study.name} (${study.id}) created: ${study.model.task} ${study.model.model}, ${study.mode}, ` +
        `${study.rounds} round(s), ${study.siteIds.length} site(s)`,
    );
    await this.orchestrator.advance(study.id);
    return this.get(study.id);
  }

  async get(id: string): Promise<Study> {
    const study = await this.studies.findOneBy({ id });
    if (!study) throw new NotFoundException(`no study ${id}`);
    return study;
  }

  list(): Promise<Study[]> {
    return this.studies.find({ order: { createdAt: 'ASC', id: 'ASC' } });
  }

  cancel(id: string): Promise<Study> {
    return this.get(id).then(() => this.orchestrator.cancel(id));
  }

  roundsOf(studyId: string): Promise<StudyRound[]> {
    return this.rounds.find({ where: { studyId }, order: { index: 'ASC' } });
  }

  /** The samples pooled by the study, one row per site that delivered. */
  poolOf(studyId: string): Promise<PoolSample[]> {
    return this.pool.find({ where: { studyId }, order: { createdAt: 'ASC', siteId: 'ASC' } });
  }

  /** The final weights once training ended (global for fedavg, each site's own too); undefined before. */
  async finalWeightsOf(studyId: string): Promise<FinalWeights | undefined> {
    return this.orchestrator.finalWeightsOf(await this.get(studyId));
  }

  async view(study: Study): Promise<StudyView> {
    const [rounds, pool] = await Promise.all([this.roundsOf(study.id), this.poolOf(study.id)]);
    return {
      id: study.id,
      name: study.name,
      model: study.model,
      mode: study.mode,
      rounds: study.rounds,
      localSteps: study.localSteps,
      batchSize: study.batchSize,
      samplesPerSite: study.samplesPerSite,
      minSites: study.minSites,
      roundTimeoutMs: study.roundTimeoutMs,
      maxSeconds: study.maxSeconds,
      siteIds: study.siteIds,
      seed: study.seed,
      truncationPsi: study.truncationPsi,
      ddimSteps: study.ddimSteps,
      data: study.data,
      syntheticPoolSha256: study.syntheticPoolSha256,
      state: study.state,
      currentRound: study.currentRound,
      error: study.error,
      modelSha256: study.modelSha256,
      createdAt: study.createdAt.toISOString(),
      updatedAt: study.updatedAt.toISOString(),
      finishedAt: study.finishedAt?.toISOString() ?? null,
      roundHistory: rounds.map((r) => ({
        index: r.index,
        state: r.state,
        startedAt: r.startedAt.toISOString(),
        deadline: r.deadline.toISOString(),
        closedAt: r.closedAt?.toISOString() ?? null,
        participants: r.participants,
        contributors: r.contributors,
        inputWeightsSha256: r.inputWeightsSha256,
        inputEmaSha256: r.inputEmaSha256,
        outputWeightsSha256: r.outputWeightsSha256,
        outputEmaSha256: r.outputEmaSha256,
        contributions: r.contributions,
      })),
      pool: {
        total: pool.reduce((sum, p) => sum + p.count, 0),
        sites: pool.map((p) => ({
          siteId: p.siteId,
          jobId: p.jobId,
          sha256: p.sha256,
          size: p.size,
          count: p.count,
          generator: p.generator,
          seed: p.seed,
          round: p.round,
          createdAt: p.createdAt.toISOString(),
        })),
      },
    };
  }
}
