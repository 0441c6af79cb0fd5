// `fedsynth demo`: the whole federation on this machine. Phantom data for three sites of unequal size, a coordinator
// (SQLite in the run folder) and three site agents as separate processes, a small FedAvg generator study, then — where
// the coordinator offers them — segmenter utility (synthetic vs the FedAvg real baseline, Dice at the sites), the
// memorization audit, approval, a release and its download; a summary and runs/<ts>/report.html.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DemoStepError, LocalFederation, sleep } from './local-federation.js';
import type { ProcessGroup } from './process-group.js';
import { type DemoSiteData, realPreview, storePreview, writeDemoSites } from './demo-data.js';
import { renderDemoReport } from './demo-report.js';
import type { DemoSummary, DiceRow, StageOutcome } from './demo-summary.js';

export interface FederatedDemoOptions {
  runDir: string;
  sites: number;
  cases: number;
  siteSizes?: number[];
  seed: number;
  dims?: [number, number, number];
  generator: 'progan' | 'stylegan1' | 'stylegan2' | 'stylegan3' | 'ddpm';
  profile: 'paper' | 'cpu' | 'tiny';
  rounds: number;
  localSteps: number;
  batchSize: number;
  samplesPerSite: number;
  roundTimeoutMs: number;
  /** segmenter utility settings */
  segmenterSteps: number;
  /** FedAvg rounds of the real (and real + synthetic) baseline; rounds × local steps ≈ segmenterSteps */
  segmenterRounds: number;
  skipUtility?: boolean;
  skipAudit?: boolean;
  /** progress lines */
  log: (line: string) => void;
  /** aborts the run between polls (Ctrl-C) */
  signal?: AbortSignal;
  /** told the process group at once (the CLI kills it on a hard exit) */
  onGroup?: (group: ProcessGroup) => void;
}

type Json = Record<string, unknown>;

const POLL_MS = 1_000;

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function arr(value: unknown): Json[] {
  return Array.isArray(value) ? (value as Json[]) : [];
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function runFederatedDemo(options: FederatedDemoOptions): Promise<DemoSummary> {
  const started = Date.now();
  const { runDir, log } = options;
  const timings: Record<string, number> = {};
  const stage = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      return await work();
    } finally {
      timings[name] = (Date.now() - t0) / 1000;
    }
  };
  const checkAbort = (step: string) => {
    if (options.signal?.aborted) throw new DemoStepError(step, 'interrupted');
  };
  await mkdir(runDir, { recursive: true });
  const fed = new LocalFederation({ dir: runDir });
  options.onGroup?.(fed.group);
  const summary: DemoSummary = {
    runDir,
    coordinatorUrl: '',
    settings: {
      sites: options.sites,
      cases: options.cases,
      generator: options.generator,
      profile: options.profile,
      rounds: options.rounds,
      localSteps: options.localSteps,
      batchSize: options.batchSize,
      samplesPerSite: options.samplesPerSite,
      segmenterSteps: options.segmenterSteps,
      segmenterRounds: options.segmenterRounds,
      seed: options.seed,
    },
    sites: [],
    study: undefined,
    utility: { status: 'skipped' },
    audit: { status: 'skipped' },
    release: { status: 'skipped' },
    logs: { coordinator: fed.coordinatorLog, sites: {} },
    timings,
    seconds: 0,
  };

  try {
    // 1. private data
    const data: DemoSiteData[] = await stage('phantom data', async () => {
      log(`[1/7] phantom BraTS data for ${options.sites} sites (${options.cases} cases) -> ${runDir}/data`);
      let last = 0;
      return writeDemoSites({
        out: path.join(runDir, 'data'),
        sites: options.sites,
        cases: options.cases,
        siteSizes: options.siteSizes,
        seed: options.seed,
        dims: options.dims,
        onCase: (done, total) => {
          if (done === total || Date.now() - last > 5_000) {
            last = Date.now();
            log(`      ${done}/${total} cases written`);
          }
        },
      });
    });
    checkAbort('phantom data');

    // 2. coordinator
    await stage('coordinator start', async () => {
      log('[2/7] coordinator (SQLite in the run folder), demo admin');
      await fed.createAdmin();
      await fed.startCoordinator();
      await fed.login();
      summary.coordinatorUrl = fed.url;
      log(`      listening on ${fed.url} (log ${fed.coordinatorLog})`);
    });

    // 3. sites
    await stage('sites enrol and connect', async () => {
      log(`[3/7] ${data.length} sites: create, enrol (one-time tokens), start the agents`);
      for (const site of data) {
        const enrolled = await fed.addSite(site.name, site.dir);
        summary.logs.sites[site.name] = enrolled.logFile;
        fed.startAgent(site.name);
        summary.sites.push({ name: site.name, siteId: enrolled.siteId, cases: site.cases });
      }
      await fed.waitForSites(data.length);
      log(`      ${data.length} sites connected`);
    });
    checkAbort('sites');

    // 4. the study
    const study = await stage('study', () => runStudy(fed, options, summary, checkAbort));

    // pool previews (read from the local coordinator's blob store: the demo owns it)
    await stage('previews', async () => {
      for (const [i, entry] of summary.sites.entries()) {
        const site = data[i]!;
        try {
          const real = await realPreview(
            site,
            options.profile === 'tiny' ? 'cpu32' : 'cpu64',
            path.join(runDir, 'report-work'),
            path.join(runDir, 'previews', `${site.name}-real.png`),
          );
          entry.realSlices = real.slices;
          entry.realPreview = real.png;
        } catch (error) {
          log(`      (no real preview for ${site.name}: ${(error as Error).message})`);
        }
      }
      for (const sample of study.pool) {
        const entry = summary.sites.find((s) => s.siteId === sample.siteId);
        if (!entry || !sample.sha256) continue;
        const blob = blobPath(fed.dataDir, sample.sha256);
        try {
          const png = path.join(runDir, 'previews', `${entry.name}-synthetic.png`);
          await storePreview(blob, png);
          entry.syntheticPreview = png;
        } catch (error) {
          log(`      (no synthetic preview for ${entry.name}: ${(error as Error).message})`);
        }
      }
    });

    // 5. utility (segmenter on the pool vs the FedAvg real baseline, evaluated at the sites)
    if (!options.skipUtility)
      await stage('utility', () => runUtility(fed, options, summary, study.id, checkAbort));
    // 6. audit, approval, release, download
    if (!options.skipAudit)
      await stage('audit and release', () => runAuditAndRelease(fed, options, summary, study.id, checkAbort));
  } catch (error) {
    summary.error =
      error instanceof DemoStepError
        ? { step: error.step, message: error.message, logFile: error.logFile }
        : { step: 'demo', message: (error as Error).message };
    throw Object.assign(error as Error, { summary });
  } finally {
    log('[7/7] stopping the site agents and the coordinator');
    await fed.close();
    summary.seconds = (Date.now() - started) / 1000;
    await writeFile(path.join(runDir, 'summary.json'), JSON.stringify(summary, null, 2));
    const report = path.join(runDir, 'report.html');
    await writeFile(report, await renderDemoReport(summary));
    summary.report = report;
  }
  return summary;
}

export function blobPath(coordinatorDataDir: string, sha256: string): string {
  return path.join(coordinatorDataDir, 'blobs', sha256.slice(0, 2), sha256.slice(2, 4), sha256);
}

interface StudyOutcome {
  id: string;
  pool: { siteId: string; sha256?: string; count: number }[];
}

async function runStudy(
  fed: LocalFederation,
  options: FederatedDemoOptions,
  summary: DemoSummary,
  checkAbort: (step: string) => void,
): Promise<StudyOutcome> {
  const step = 'run the study';
  const body = {
    name: `demo ${options.generator}/${options.profile}`,
    model: { task: 'generator', model: options.generator, profile: options.profile },
    mode: 'fedavg',
    rounds: options.rounds,
    localSteps: options.localSteps,
    batchSize: options.batchSize,
    samplesPerSite: options.samplesPerSite,
    minSites: Math.max(1, summary.sites.length - 1),
    roundTimeoutMs: options.roundTimeoutMs,
    siteIds: summary.sites.map((s) => s.siteId),
    seed: options.seed,
  };
  options.log(
    `[4/7] study: ${options.generator} '${options.profile}', FedAvg, ${options.rounds} rounds × ${options.localSteps} steps, ` +
      `${options.samplesPerSite} samples per site`,
  );
  const created = await fed.call<Json>('create the study', 'POST', '/api/studies', body);
  const id = str(created.id);
  if (!id)
    throw new DemoStepError('create the study', `no study id in ${JSON.stringify(created).slice(0, 300)}`);
  let lastLine = '';
  let status: Json = created;
  for (;;) {
    checkAbort(step);
    fed.assertCoordinatorAlive(step);
    for (const site of fed.sites.values())
      if (site.agent?.exit) throw new DemoStepError(step, `${site.name}'s agent stopped`, site.logFile);
    status = await fed.call<Json>(step, 'GET', `/api/studies/${id}`);
    const state = str(status.state) ?? '?';
    const line = describeProgress(status);
    if (line !== lastLine) {
      options.log(`      ${line}`);
      lastLine = line;
    }
    if (state === 'done') break;
    if (state === 'failed' || state === 'cancelled')
      throw new DemoStepError(step, `the study ${state}: ${str(status.error) ?? ''}`, fed.coordinatorLog);
    await sleep(POLL_MS);
  }
  const rounds = arr(status.roundHistory);
  const pool = poolOf(status).map((p) => ({
    siteId: str(p.siteId) ?? '',
    sha256: str(p.sha256),
    count: num(p.count) ?? 0,
  }));
  summary.study = {
    id,
    state: 'done',
    rounds: rounds.map((r) => ({
      index: num(r.index) ?? 0,
      contributors: arr(r.contributors).length,
      contributions: Object.fromEntries(
        Object.entries((r.contributions as Record<string, Json> | undefined) ?? {}).map(([site, c]) => [
          site,
          { trainSlices: num(c.trainSlices), finalLoss: num(c.finalLoss), seconds: num(c.seconds) },
        ]),
      ),
    })),
    pooled: pool.reduce((a, p) => a + p.count, 0),
  };
  for (const p of pool) {
    const entry = summary.sites.find((x) => x.siteId === p.siteId);
    if (entry) {
      entry.samples = p.count;
      entry.sampleSha256 = p.sha256;
    }
  }
  for (const entry of summary.sites) {
    entry.trainSlices = summary.study.rounds
      .map((r) => r.contributions[entry.siteId]?.trainSlices)
      .find((x) => x !== undefined);
    entry.roundsContributed = summary.study.rounds.filter((r) => r.contributions[entry.siteId]).length;
  }
  options.log(
    `      study done: ${summary.study.rounds.length} round(s), ${summary.study.pooled} synthetic slices pooled from ${pool.length} site(s)`,
  );
  return { id, pool };
}

/** GET /api/studies/:id's pool.sites */
function poolOf(status: Json): Json[] {
  return arr((status.pool as Json | undefined)?.sites);
}

function describeProgress(s: Json): string {
  const state = str(s.state) ?? '?';
  const round = num(s.currentRound);
  const total = num(s.rounds);
  const rounds = arr(s.roundHistory);
  const open = rounds.find((r) => r.state === 'open');
  const contributed = open ? Object.keys((open.contributions as Json | undefined) ?? {}).length : 0;
  const pool = poolOf(s);
  if (state === 'running')
    return `round ${(round ?? 0) + 1}/${total ?? '?'} training at ${arr(open?.participants).length} site(s)${
      contributed ? `, ${contributed} update(s) in` : ''
    }`;
  if (state === 'sampling') return `sampling: ${pool.length} site pool(s) in`;
  return `study ${state}`;
}

const SCORE_LABELS = ['WT', 'TC', 'ET', 'NCR', 'ED'];

function scoreRow(model: string, table: unknown, subjects?: number): DiceRow | undefined {
  if (!table || typeof table !== 'object') return undefined;
  const t = table as Record<string, unknown>;
  return {
    model,
    site: 'all sites (mean over test subjects)',
    subjects,
    dice: Object.fromEntries(
      SCORE_LABELS.map((k) => [k, typeof t[k] === 'number' ? (t[k] as number) : null]),
    ),
  };
}

/** Waits for `probe` to return a value, polling; fails with the step's name after `timeoutMs`. */
async function poll<T>(
  fed: LocalFederation,
  step: string,
  checkAbort: (step: string) => void,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    checkAbort(step);
    fed.assertCoordinatorAlive(step);
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new DemoStepError(
        step,
        `not finished after ${Math.round(timeoutMs / 1000)} s`,
        fed.coordinatorLog,
      );
    await sleep(POLL_MS);
  }
}

/**
 * The mixing experiment's fixed total: no more than the pool holds and no more than the smallest site's real training
 * slices, so a 50:50 share can be drawn from both at every site.
 */
function mixTotal(summary: DemoSummary): number | undefined {
  const real = summary.sites.map((s) => s.trainSlices).filter((n): n is number => n !== undefined && n > 0);
  const pooled = summary.study?.pooled ?? 0;
  if (!real.length || pooled < 2) return undefined;
  return Math.max(2, Math.min(pooled, ...real));
}

async function runUtility(
  fed: LocalFederation,
  options: FederatedDemoOptions,
  summary: DemoSummary,
  studyId: string,
  checkAbort: (step: string) => void,
): Promise<void> {
  const step = 'utility (segmenter on the pool vs FedAvg on real slices)';
  // The U-Net profile with the generator's slice size (tiny 32², cpu 64², paper 256²). The FedAvg arms make as many
  // optimizer steps in sequence (rounds × local steps) as the central run, so the comparison is fair.
  const rounds = Math.max(1, Math.min(options.segmenterRounds, options.segmenterSteps));
  const body = {
    model: 'unet',
    profile: options.profile,
    steps: options.segmenterSteps,
    batch: 8,
    rounds,
    localSteps: Math.max(1, Math.round(options.segmenterSteps / rounds)),
    // the mixing experiment, kept to one mix to fit the demo's time: half of each site's real training count
    // replaced by pool slices (shares 0 and 1 are the real and synthetic arms above)
    mixShares: [0.5],
    // a fixed total every site can fill from both sides: its real training slices and the pool
    mixTotalSlices: mixTotal(summary),
  };
  options.log(
    `[5/7] utility: U-Net '${body.profile}' trained centrally on the pool (${body.steps} steps) and by FedAvg on the ` +
      `sites' real slices (${body.rounds} × ${body.localSteps}), on real + synthetic and on a 50:50 mix, evaluated ` +
      `at every site`,
  );
  const res = await fed.request<Json>('POST', `/api/studies/${studyId}/utility`, { body });
  if (res.status === 404 && /Cannot POST/.test(JSON.stringify(res.body))) {
    summary.utility = notAvailable('this coordinator has no utility endpoint');
    return;
  }
  if (res.status !== 201 && res.status !== 200)
    throw new DemoStepError(
      step,
      `HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 600)}`,
      fed.coordinatorLog,
    );
  const runId = str(res.body.id);
  let lastLine = '';
  const run = await poll(fed, step, checkAbort, 30 * 60_000, async () => {
    const report = await fed.call<Json>(step, 'GET', `/api/studies/${studyId}/utility`);
    const r = arr(report.runs).find((x) => x.id === runId) ?? arr(report.runs).at(-1);
    if (!r) return undefined;
    const line = arr(r.arms)
      .map((a) => `${str(a.trainedOn)} ${str(a.state)}`)
      .join(', ');
    if (line !== lastLine) options.log(`      ${line}`);
    lastLine = line;
    if (r.state === 'failed')
      throw new DemoStepError(step, `the utility run failed: ${str(r.error)}`, fed.coordinatorLog);
    return r.state === 'done' ? r : undefined;
  });
  const table = (run.table as Json | undefined) ?? {};
  const arms = arr(run.arms);
  // the coordinator calls a run done when one arm is; the demo's comparison needs them all
  const failed = arms.filter((a) => a.state === 'failed');
  if (failed.length)
    throw new DemoStepError(
      step,
      failed.map((a) => `the ${str(a.trainedOn)} arm failed: ${str(a.error) ?? '?'}`).join('; '),
      fed.coordinatorLog,
    );
  const subjectsOf = (trainedOn: string) => num(arms.find((a) => a.trainedOn === trainedOn)?.subjects);
  summary.utility = {
    status: 'done',
    id: runId,
    rows: [
      scoreRow('synthetic pool (central)', table.synthetic, subjectsOf('synthetic')),
      scoreRow('real slices (FedAvg)', table.real, subjectsOf('real')),
      scoreRow('real + synthetic (FedAvg)', table.both, subjectsOf('both')),
      ...arr(table.mixing).map((m) =>
        scoreRow(
          `mix ${Math.round(num(m.syntheticShare)! * 100)}% synthetic (FedAvg)`,
          m.dice,
          subjectsOf(`mix:${num(m.syntheticShare)}`),
        ),
      ),
    ].filter((r): r is DiceRow => r !== undefined),
    ratio: scoreRow('ratio', table.syntheticToReal)?.dice,
  };
}

function histogramOf(h: unknown): { bins: number[]; edges: number[] } | undefined {
  if (!h || typeof h !== 'object') return undefined;
  const { min, max, counts } = h as { min: number; max: number; counts: number[] };
  if (!Array.isArray(counts)) return undefined;
  const width = (max - min) / Math.max(1, counts.length);
  return { bins: counts, edges: counts.map((_, i) => min + i * width).concat(max) };
}

async function runAuditAndRelease(
  fed: LocalFederation,
  options: FederatedDemoOptions,
  summary: DemoSummary,
  studyId: string,
  checkAbort: (step: string) => void,
): Promise<void> {
  const step = 'audit (memorization scores at every site)';
  options.log(
    '[6/7] audit: every site scores the pool against its private training slices; approve; release',
  );
  const res = await fed.request<Json>('POST', '/api/audits', { body: { studyId, margin: 0.02 } });
  if (res.status === 404 && /Cannot POST/.test(JSON.stringify(res.body))) {
    summary.audit = notAvailable('this coordinator has no audit endpoint');
    summary.release = notAvailable('no audit, no release');
    return;
  }
  if (res.status !== 201 && res.status !== 200)
    throw new DemoStepError(
      step,
      `HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 600)}`,
      fed.coordinatorLog,
    );
  const auditId = str(res.body.id)!;
  let lastLine = '';
  const audit = await poll(fed, step, checkAbort, 15 * 60_000, async () => {
    const a = await fed.call<Json>(step, 'GET', `/api/audits/${auditId}`);
    const line = `audit ${str(a.state)}: ${arr(a.sites)
      .map((s) => `${str(s.siteName)} ${str(s.state)}`)
      .join(', ')}`;
    if (line !== lastLine) options.log(`      ${line}`);
    lastLine = line;
    if (a.state === 'failed')
      throw new DemoStepError(step, `the audit failed: ${str(a.error)}`, fed.coordinatorLog);
    return a.state === 'scored' ? a : undefined;
  });
  const combined = audit.combined as Json | null;
  await fed.call('approve the audit', 'POST', `/api/audits/${auditId}/decision`, {
    approve: true,
    comment: 'fedsynth demo: approved automatically by the demo admin',
  });
  summary.audit = {
    status: 'done',
    id: auditId,
    candidates: num(audit.candidates),
    flagged: num(combined?.withheldCount),
    approved: num(combined?.releasable),
    histograms: arr(audit.sites).flatMap((s) => {
      const h = histogramOf(s.scoreHistogram);
      return h ? [{ site: str(s.siteName) ?? str(s.siteId) ?? '?', threshold: num(s.threshold), ...h }] : [];
    }),
  };
  options.log(
    `      ${summary.audit.candidates ?? '?'} candidates, ${summary.audit.flagged ?? '?'} withheld; approved by the demo admin`,
  );

  const rstep = 'release';
  // 202: the release is built in the background
  const created = await fed.call<Json>(rstep, 'POST', '/api/releases', { auditId }, [201, 202]);
  const releaseId = str(created.id)!;
  const release = await poll(fed, rstep, checkAbort, 10 * 60_000, async () => {
    const r = await fed.call<Json>(rstep, 'GET', `/api/releases/${releaseId}`);
    if (r.state === 'failed')
      throw new DemoStepError(rstep, `the release failed: ${str(r.error)}`, fed.coordinatorLog);
    return r.state === 'ready' ? r : undefined;
  });
  const file = path.join(options.runDir, 'release', `release-v${num(release.version) ?? 1}.tar`);
  await mkdir(path.dirname(file), { recursive: true });
  const download = await fetch(`${fed.url}/api/releases/${releaseId}/download`, {
    headers: { authorization: `Bearer ${await fed.login()}` },
  });
  if (!download.ok || !download.body)
    throw new DemoStepError('download the release', `HTTP ${download.status}`, fed.coordinatorLog);
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { createWriteStream } = await import('node:fs');
  await pipeline(Readable.fromWeb(download.body as never), createWriteStream(file));
  const { stat } = await import('node:fs/promises');
  summary.release = {
    status: 'done',
    id: releaseId,
    version: num(release.version),
    samples: num(release.sampleCount),
    path: file,
    sha256: await sha256File(file),
    bytes: (await stat(file)).size,
  };
  options.log(`      release v${summary.release.version} -> ${file} (sha256 ${summary.release.sha256})`);
}

function notAvailable(reason: string): StageOutcome {
  return { status: 'not-available', reason };
}

export type { DiceRow };
