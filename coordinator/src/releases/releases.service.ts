import {
  ConflictException,
  Inject,
  Injectable,
  InternalServerErrorException,
  Logger,
  NotFoundException,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import {
  buildReleaseInWorker,
  MANIFEST_FILE,
  ReleaseIntegrityError,
  releaseTarStream,
  removeReleaseFolder,
  verifyRelease,
  type ReleaseCard,
  type ReleaseFacts,
} from '@fedsynth/common/release/index';
import { Not, type Repository } from 'typeorm';
import type { Audit } from '../audits/audit.entity.js';
import { AuditsService } from '../audits/audits.service.js';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { isUniqueViolation } from '../database/unique-violation.js';
import { BlobsService } from '../blobs/blobs.service.js';
import { UsersService } from '../users/users.service.js';
import { ReleaseEvidence } from './release-evidence.js';
import { Release, releaseArchiveName } from './release.entity.js';

/**
 * Releases (DESIGN.md step 7): an approved audit's candidates minus the withheld ones, built once into a read-only
 * folder `<dataDir>/releases/v<N>` (NIfTI, nnU-Net layout, previews, card, manifest) and served as a streamed tar.
 * There is no update or delete of a built release: it is immutable. A failed build is the one exception: a new
 * attempt for the same audit takes over the failed row with the next version (so versions stay unique and
 * increasing, and a failed one is never reused).
 */
@Injectable()
export class ReleasesService implements OnApplicationBootstrap {
  private readonly logger = new Logger(ReleasesService.name);
  private readonly builds = new Map<string, Promise<void>>();

  constructor(
    @InjectRepository(Release) private readonly releases: Repository<Release>,
    private readonly audits: AuditsService,
    private readonly blobs: BlobsService,
    private readonly users: UsersService,
    private readonly evidence: ReleaseEvidence,
    private readonly clock: Clock,
    private readonly random: RandomSource,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
  ) {}

  /** Builds interrupted by a restart start over (the folder was never served). */
  async onApplicationBootstrap(): Promise<void> {
    for (const release of await this.releases.find({ where: { state: 'building' } }))
      this.startBuild(release);
  }

  /** Records the release (state building) and builds it in the background; see {@link settled}. */
  async create(auditId: string, createdBy: string | null): Promise<Release> {
    const audit = await this.audits.get(auditId);
    if (audit.state !== 'approved') {
      throw new ConflictException(
        `audit ${auditId} is ${audit.state}; only an approved audit can be released`,
      );
    }
    for (let attempt = 0; attempt < 8; attempt++) {
      if (await this.releases.existsBy({ auditId, state: Not('failed') })) {
        throw new ConflictException(`audit ${auditId} has a release already (one release per audit)`);
      }
      const failed = await this.releases.findOneBy({ auditId, state: 'failed' });
      const last = await this.releases.find({ order: { version: 'DESC' }, take: 1 });
      const version = (last[0]?.version ?? 0) + 1;
      const fresh = {
        version,
        state: 'building' as const,
        folder: path.join(this.releasesDir(), `v${version}`),
        manifestSha256: null,
        size: null,
        sampleCount: null,
        error: null,
        createdAt: this.clock.now(),
        createdBy,
        readyAt: null,
      };
      let release: Release;
      try {
        if (failed) {
          // retry of a failed build: the same row (UQ on audit_id), a new version; only if it is still failed
          const r = await this.releases.update({ id: failed.id, state: 'failed' }, fresh);
          if (r.affected !== 1) continue;
          release = Object.assign(failed, fresh);
          this.logger.log(`release of audit ${auditId}: v${failed.version} failed, retrying as v${version}`);
        } else {
          release = this.releases.create({
            id: this.random.uuid(),
            auditId,
            studyId: audit.studyId,
            ...fresh,
          });
          await this.releases.insert(release);
        }
      } catch (error) {
        if (isUniqueViolation(error)) continue; // another release took this version (or this audit): look again
        throw error;
      }
      this.startBuild(release);
      return release;
    }
    throw new ConflictException('releases are being created concurrently; try again');
  }

  /** Resolves when the release's build (if any is running in this process) has ended. */
  async settled(id: string): Promise<Release> {
    await this.builds.get(id);
    return this.get(id);
  }

  async get(id: string): Promise<Release> {
    const release = await this.releases.findOneBy({ id });
    if (!release) throw new NotFoundException(`no release ${id}`);
    return release;
  }

  /** A release that can be read or downloaded: ready, else 404 (building, failed and unknown look the same). */
  async getReady(id: string): Promise<Release> {
    const release = await this.releases.findOneBy({ id, state: 'ready' });
    if (!release) throw new NotFoundException(`no released data set ${id}`);
    return release;
  }

  list(options: { readyOnly: boolean }): Promise<Release[]> {
    return this.releases.find({
      where: options.readyOnly ? { state: 'ready' } : {},
      order: { version: 'ASC' },
    });
  }

  async card(release: Release): Promise<{ card: ReleaseCard; manifest: string }> {
    const [card, manifest] = await Promise.all([
      readFile(path.join(release.folder, 'card.json'), 'utf8'),
      readFile(path.join(release.folder, MANIFEST_FILE), 'utf8'),
    ]);
    return { card: JSON.parse(card) as ReleaseCard, manifest };
  }

  /**
   * The release as a tar stream (ready releases only): exactly the files MANIFEST.sha256 lists, then the manifest,
   * never a fresh listing of the folder. Every file is checked against the manifest (and the manifest against the
   * recorded hash) before anything is sent, and hashed again while it is sent; a release that no longer matches is
   * refused with the file named (500: the server's copy is damaged).
   */
  async archive(id: string): Promise<{ release: Release; name: string; stream: Readable }> {
    const release = await this.getReady(id);
    const name = releaseArchiveName(release.version);
    let checked: Awaited<ReturnType<typeof verifyRelease>>;
    try {
      checked = await verifyRelease(release.folder, release.manifestSha256 ?? undefined);
    } catch (error) {
      if (!(error instanceof ReleaseIntegrityError)) throw error;
      this.logger.error(`download of release v${release.version} refused: ${error.message}`);
      throw new InternalServerErrorException(`${error.message}; the download is refused`);
    }
    const stream = releaseTarStream(release.folder, {
      prefix: name,
      mtime: release.readyAt ?? release.createdAt,
      files: checked.files,
      sha256: checked.sha256,
    });
    stream.on('error', (error) =>
      this.logger.error(`download of release v${release.version} aborted: ${error.message}`),
    );
    return { release, name, stream };
  }

  private releasesDir(): string {
    return path.join(this.config.dataDir, 'releases');
  }

  private startBuild(release: Release): void {
    const p = this.build(release)
      .catch(async (error: unknown) => {
        const message = (error as Error).message ?? String(error);
        this.logger.error(`release v${release.version} failed: ${message}`);
        await this.releases.update(
          { id: release.id, state: 'building' },
          { state: 'failed', error: message.slice(0, 4000) },
        );
      })
      .catch((error: unknown) =>
        this.logger.error(`recording the failure of release ${release.id}: ${String(error)}`),
      )
      .finally(() => this.builds.delete(release.id));
    this.builds.set(release.id, p);
  }

  private async build(release: Release): Promise<void> {
    const audit = await this.audits.get(release.auditId);
    if (audit.state !== 'approved' || !audit.combined) throw new Error(`audit ${audit.id} is not approved`);
    await mkdir(this.releasesDir(), { recursive: true });
    // leftovers of an interrupted build of this version (read-only once complete): never served, so start over
    await removeReleaseFolder(release.folder);
    for (const name of await readdir(this.releasesDir())) {
      if (name.startsWith(`${path.basename(release.folder)}.partial-`)) {
        await removeReleaseFolder(path.join(this.releasesDir(), name));
      }
    }
    const siteNames = new Map(audit.siteResults.map((s) => [s.siteId, s.siteName]));
    // gzip of every NIfTI and deflate of every preview: in a worker thread, off the event loop
    const summary = await buildReleaseInWorker({
      out: release.folder,
      sources: audit.sources.map((s) => ({
        store: this.blobs.store.pathOf(s.sha256),
        site: siteNames.get(s.siteId) ?? s.siteId,
        generator: s.generator,
        job: s.jobId,
        ...(s.seed !== null ? { seed: s.seed } : {}),
      })),
      withheld: audit.combined.withheld,
      facts: await this.facts(release, audit),
      casePrefix: `FEDSYNTH-${audit.studyId.replace(/[^A-Za-z0-9]/g, '').slice(0, 8) || 'study'}`,
      nnunetDatasetId: 500 + ((release.version - 1) % 500),
    });
    const r = await this.releases.update(
      { id: release.id, state: 'building' },
      {
        state: 'ready',
        manifestSha256: summary.manifestSha256,
        size: summary.bytes,
        sampleCount: summary.samples,
        readyAt: this.clock.now(),
      },
    );
    if (r.affected !== 1) throw new Error(`release ${release.id} changed while it was built`);
    this.logger.log(
      `release v${release.version}: ${summary.samples} samples, manifest ${summary.manifestSha256}`,
    );
  }

  private async facts(release: Release, audit: Audit): Promise<ReleaseFacts> {
    const username = async (id: string | null) =>
      id ? ((await this.users.findById(id))?.username ?? id) : undefined;
    const decidedBy = await username(audit.decidedBy);
    const createdBy = await username(release.createdBy);
    return {
      title: `fedsynth release v${release.version} (study ${audit.studyId})`,
      version: release.version,
      study: { id: audit.studyId },
      audit: {
        id: audit.id,
        margin: audit.margin,
        candidates: audit.candidateCount,
        withheld: audit.combined?.withheld.length ?? 0,
        sites: audit.siteResults.map((s) => ({
          site: s.siteName,
          threshold: s.threshold ?? NaN,
          flagged: s.flagged?.length ?? 0,
          referenceKind: s.referenceKind ?? 'held-out',
        })),
        ...(decidedBy ? { decidedBy } : {}),
        ...(audit.decidedAt ? { decidedAt: audit.decidedAt.toISOString() } : {}),
        ...(audit.decisionComment ? { comment: audit.decisionComment } : {}),
      },
      evaluation: await this.evidence.evaluationFor(audit.studyId),
      createdAt: release.createdAt.toISOString(),
      ...(createdBy ? { createdBy } : {}),
    };
  }
}
