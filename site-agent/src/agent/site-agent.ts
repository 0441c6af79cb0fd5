// The site agent daemon: one socket.io connection to the coordinator, authenticated by a fresh site assertion per
// (re)connection; hello with capabilities and the jobs in flight; heartbeats; job offers run through the handler
// registry with progress, resumable uploads and downloads; reconnects with backoff and resumes what was running.
import { EventEmitter } from 'node:events';
import { copyFile, link, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { FileBlobStore } from '@fedsynth/common/blobstore/index';
import {
  type Clock,
  type SiteKeyPair,
  createSiteAssertion,
  systemClock,
} from '@fedsynth/common/identity/index';
import {
  type HelloAccepted,
  type InFlightJob,
  type JobFailed,
  type JobProgress,
  type JobResult,
  type JobResume,
  PROTOCOL_VERSION,
  ProtocolError,
  type ServerToSiteEvents,
  type SiteToServerEvents,
  type TransferKind,
  jobResultSchema,
  onServerEvent,
  siteToServerReplySchemas,
} from '@fedsynth/common/protocol/index';
import {
  type AckEmitter,
  type SendResult,
  type SocketAckEmitter,
  TransferError,
  type TransferProgress,
  TransferReceiver,
  TransferSender,
  TransportError,
  attachTransferReceiver,
  fileChunkSource,
  socketAckEmitter,
} from '@fedsynth/common/transfer/index';
import { type Socket, io } from 'socket.io-client';
import type * as z from 'zod';
import type { SiteDescription } from './capabilities.js';
import { scrubPrivateDetails } from './scrub.js';
import {
  JobError,
  type JobContext,
  type JobHandler,
  type JobHandlerRegistry,
  type JobOutput,
  type JobProgressDetail,
  type OfferedJob,
  type UploadOptions,
  type UploadSource,
  defaultJobHandlers,
} from './job-handlers.js';
import { type JobRecord, JobStore } from './job-store.js';
import { PrivateSliceStores } from './private-slices.js';
import { type AgentLogger, streamLogger } from './logger.js';
import { TokenBucket, rateLimitedEmitter } from './rate-limiter.js';
import { type SiteState, agentPaths } from './site-state.js';
import { AGENT_VERSION } from './version.js';

export type SiteClientSocket = Socket<ServerToSiteEvents, SiteToServerEvents>;

/** Handshake refusals that no retry fixes: the agent stops (re-enrol, fix the URL or the clock). */
export const FATAL_HANDSHAKE_CODES: ReadonlySet<string> = new Set([
  'revoked',
  'unknown_key',
  'bad_signature',
  'wrong_audience',
  'subject_mismatch',
  'malformed',
  'lifetime_too_long',
]);

/** Transfer kinds the coordinator sends down (job inputs). */
export const DOWNLOAD_KINDS: readonly TransferKind[] = [
  'global-weights',
  'segmenter',
  'audit-pool',
  'synthetic-pool',
];

export class AgentFatalError extends Error {
  override readonly name = 'AgentFatalError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The coordinator answered a request with an error. */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

export class AgentStoppedError extends Error {
  override readonly name = 'AgentStoppedError';
}

/** Why a job's handler was aborted. */
type AbortReason = 'stopping' | 'lease_lost' | 'cancelled' | 'abandoned' | 'done';

class JobAborted extends Error {
  override readonly name = 'JobAborted';
  constructor(readonly reason: AbortReason) {
    super(`job aborted: ${reason}`);
  }
}

export interface SiteAgentEventMap {
  ready: [HelloAccepted];
  disconnected: [reason: string];
  'job:accepted': [OfferedJob];
  'job:resumed': [OfferedJob];
  'job:done': [{ job: OfferedJob; result: JobResult }];
  'job:failed': [{ job: OfferedJob; failure: JobFailed }];
  'job:abandoned': [{ job: OfferedJob; reason: string }];
  'upload:progress': [{ jobId: string; role: string; progress: TransferProgress }];
  'upload:done': [{ jobId: string; role: string; result: SendResult }];
  /** a chunk of a job input arrived from the coordinator */
  'download:progress': [TransferProgress];
  stopped: [reason: string];
  fatal: [AgentFatalError];
}

export interface SiteAgentOptions {
  stateDir: string;
  site: SiteState;
  key: SiteKeyPair;
  /** backend, cores, memory and data set counts for the hello (asked once, at start) */
  describe: () => Promise<SiteDescription>;
  handlers?: JobHandlerRegistry;
  /** jobs run at once (default 1); further offers are declined as busy */
  concurrency?: number;
  /** assertion times and heartbeat timestamps (default the system clock) */
  clock?: Clock;
  logger?: AgentLogger;
  /** reconnect backoff (default 500 ms doubling to 30 s, ±25% jitter) */
  reconnect?: { initialMs?: number; maxMs?: number };
  transports?: Array<'websocket' | 'polling'>;
  upload?: { chunkSize?: number; window?: number; bytesPerSecond?: number };
  /** ack timeout of a request (default 30 s) */
  requestTimeoutMs?: number;
  /** least time between two job:progress messages of a job (default 1 s) */
  progressIntervalMs?: number;
  /** how long stop() waits for handlers to wind down (default 10 s) */
  stopTimeoutMs?: number;
  agentVersion?: string;
}

interface ActiveJob {
  record: JobRecord;
  controller: AbortController;
  /** the coordinator granted the lease (it counts in heartbeats) */
  accepted: boolean;
  uploading: number;
  settled?: Promise<void>;
  progress: { latest?: JobProgress; timer?: NodeJS.Timeout; sending: boolean; lastSent: number };
}

const SETTLED_REASONS: ReadonlySet<AbortReason> = new Set(['lease_lost', 'cancelled', 'abandoned', 'done']);

export class SiteAgent {
  readonly events = new EventEmitter<SiteAgentEventMap>();
  readonly store: JobStore;
  readonly downloads: FileBlobStore;
  /** the site's private slice stores (data folder, or sliced into <state>/slices) */
  readonly privateSlices: PrivateSliceStores;
  private readonly receiver: TransferReceiver;
  private readonly handlers: JobHandlerRegistry;
  private readonly log: AgentLogger;
  private readonly clock: Clock;
  private readonly paths: ReturnType<typeof agentPaths>;
  private readonly concurrency: number;
  private readonly requestTimeoutMs: number;
  private readonly progressIntervalMs: number;
  private readonly bucket?: TokenBucket;
  private socket?: SiteClientSocket;
  private emitter?: SocketAckEmitter;
  private description?: SiteDescription;
  private readonly active = new Map<string, ActiveJob>();
  /** jobs persisted by an earlier process, waiting for the coordinator's word in the next hello */
  private readonly pending = new Map<string, JobRecord>();
  private ready = false;
  private readyWaiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  private heartbeatTimer?: NodeJS.Timeout;
  private heartbeatSeq = 0;
  private connectionGeneration = 0;
  private declinedBusy = false;
  private reconnectTimer?: NodeJS.Timeout;
  private reconnectAttempts = 0;
  private stopping = false;
  private fatalError?: AgentFatalError;
  private stopPromise?: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (e: Error) => void;
  /** settles when the agent stops: resolves after stop(), rejects with AgentFatalError (e.g. revoked) */
  readonly done: Promise<void>;

  constructor(private readonly options: SiteAgentOptions) {
    this.paths = agentPaths(options.stateDir);
    this.store = new JobStore(this.paths.jobs);
    this.downloads = new FileBlobStore(this.paths.blobs);
    this.handlers = options.handlers ?? defaultJobHandlers;
    this.log = options.logger ?? streamLogger('info');
    this.clock = options.clock ?? systemClock;
    this.privateSlices = new PrivateSliceStores(
      options.site.dataDir,
      path.join(options.stateDir, 'slices'),
      this.log,
    );
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.progressIntervalMs = options.progressIntervalMs ?? 1_000;
    if (options.upload?.bytesPerSecond) {
      this.bucket = new TokenBucket(options.upload.bytesPerSecond);
    }
    this.receiver = new TransferReceiver({
      staging: this.paths.transfers,
      blobStore: this.downloads,
      clock: systemClock, // compared with file times when sweeping staging
      acceptKinds: DOWNLOAD_KINDS,
      maxActivePerOwner: 8,
      onProgress: (progress) => this.events.emit('download:progress', progress),
    });
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined); // observed through `done` by whoever cares
  }

  get siteId(): string {
    return this.options.site.siteId;
  }

  get isReady(): boolean {
    return this.ready;
  }

  /** The socket (tests drop its transport to simulate a network failure). */
  get connection(): SiteClientSocket | undefined {
    return this.socket;
  }

  /** Ids of the jobs this agent works on now. */
  activeJobIds(): string[] {
    return [...this.active.keys()];
  }

  async start(): Promise<void> {
    if (this.socket) throw new Error('the agent was started already');
    await mkdir(this.paths.work, { recursive: true, mode: 0o700 });
    this.description = await this.options.describe();
    for (const record of await this.store.list()) this.pending.set(record.job.id, record);
    if (this.pending.size) this.log.info(`${this.pending.size} job(s) in flight from the previous run`);
    await this.receiver
      .sweep({ incompleteMs: 24 * 3600_000, committedMs: 3600_000 })
      .catch((e: unknown) => this.log.warn(`sweeping download staging: ${String(e)}`));

    const base = new URL(this.options.site.coordinatorUrl);
    const socketPath = `${base.pathname.replace(/\/+$/, '')}/socket.io`;
    const socket: SiteClientSocket = io(base.origin, {
      path: socketPath,
      transports: this.options.transports ?? ['websocket'],
      autoConnect: false,
      forceNew: true,
      reconnection: true,
      reconnectionDelay: this.options.reconnect?.initialMs ?? 500,
      reconnectionDelayMax: this.options.reconnect?.maxMs ?? 30_000,
      randomizationFactor: 0.25,
      // a fresh assertion for every (re)connection: each carries a new jti, checked against replays
      auth: (cb) => {
        this.mintAssertion().then(
          (token) => cb({ token }),
          (error: unknown) => {
            this.log.error(`could not sign a site assertion: ${String(error)}`);
            cb({});
          },
        );
      },
    });
    this.socket = socket;
    this.emitter = socketAckEmitter(socket);
    attachTransferReceiver(socket, this.receiver, {
      owner: 'coordinator',
      onError: (e, event) => this.log.error(`${event}: ${String(e)}`),
    });
    onServerEvent(socket, 'job:offer', (m) => this.onOffer(m.job));
    onServerEvent(socket, 'job:cancel', (m) => {
      const a = this.active.get(m.jobId);
      if (a && a.record.job.attempt === m.attempt) {
        this.log.warn(`job ${m.jobId} cancelled by the coordinator: ${m.reason}`);
        this.abortJob(a, 'cancelled');
      }
      return { ok: true };
    });
    socket.on('connect', () => void this.onConnect());
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (err) => this.onConnectError(err as Error & { data?: { code?: string } }));
    this.log.info(
      `connecting to ${base.origin}${socketPath} as site ${this.options.site.siteName} (${this.siteId})`,
    );
    socket.connect();
  }

  /** Resolves once connected and the hello was accepted (now, or after the next (re)connection). */
  waitReady(signal?: AbortSignal): Promise<void> {
    if (this.stopping) return Promise.reject(new AgentStoppedError('the agent is stopping'));
    if (this.ready) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (e: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        this.readyWaiters.delete(waiter);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.readyWaiters.add(waiter);
    });
  }

  /**
   * Stops: no new offers, running handlers are aborted (their jobs stay persisted, so the next run resumes them),
   * the connection is closed.
   */
  stop(reason = 'stopped'): Promise<void> {
    this.stopPromise ??= (async () => {
      this.stopping = true;
      this.log.info(`stopping (${reason})`);
      clearInterval(this.heartbeatTimer);
      clearTimeout(this.reconnectTimer);
      for (const a of this.active.values()) this.abortJob(a, 'stopping');
      for (const w of [...this.readyWaiters]) w.reject(new AgentStoppedError('the agent is stopping'));
      this.readyWaiters.clear();
      const settled = Promise.allSettled([...this.active.values()].map((a) => a.settled));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        settled,
        new Promise((resolve) => (timer = setTimeout(resolve, this.options.stopTimeoutMs ?? 10_000))),
      ]);
      clearTimeout(timer);
      this.ready = false;
      this.socket?.close();
      this.emitter?.dispose();
      this.events.emit('stopped', reason);
      if (this.fatalError) this.rejectDone(this.fatalError);
      else this.resolveDone();
    })();
    return this.stopPromise;
  }

  // ------------------------------------------------------------------------------------------ connection

  private mintAssertion(): Promise<string> {
    const { key, site } = this.options;
    return createSiteAssertion({
      privateKey: key.privateKey,
      kid: key.kid,
      siteId: site.siteId,
      audience: site.audience,
      clock: this.clock,
    });
  }

  private async onConnect(): Promise<void> {
    const socket = this.socket!;
    const generation = ++this.connectionGeneration;
    const current = () => generation === this.connectionGeneration && socket.connected && !this.stopping;
    const hello = {
      protocolVersion: PROTOCOL_VERSION,
      agentVersion: (this.options.agentVersion ?? AGENT_VERSION).slice(0, 64),
      capabilities: { ...this.description!.capabilities, jobKinds: this.handlers.kinds() },
      dataset: this.description!.dataset,
      ...this.inFlightReport(),
    };
    let raw: unknown;
    try {
      raw = await this.emitter!.emitWithAck('site:hello', hello, this.requestTimeoutMs);
    } catch (error) {
      if (!current()) return; // that connection is gone already; a newer one says its own hello
      this.log.warn(`hello: ${(error as Error).message}`);
      socket.disconnect(); // start over with a new connection
      this.scheduleReconnect();
      return;
    }
    if (!current()) return;
    const parsed = siteToServerReplySchemas['site:hello'].safeParse(raw);
    if (!parsed.success || !parsed.data.ok) {
      const code = parsed.success && !parsed.data.ok ? parsed.data.code : 'bad_reply';
      const message = parsed.success && !parsed.data.ok ? parsed.data.message : 'unreadable hello ack';
      if (code === 'protocol_mismatch' || code === 'unauthorized') {
        return this.failFatal(new AgentFatalError(code, `the coordinator refused the hello: ${message}`));
      }
      this.log.warn(`hello refused (${code}): ${message}; reconnecting`);
      socket.disconnect();
      this.scheduleReconnect();
      return;
    }
    const accepted = parsed.data;
    await this.reconcile(accepted.jobs ?? []);
    if (!current()) return;
    this.ready = true;
    this.reconnectAttempts = 0;
    this.startHeartbeats(accepted.heartbeatIntervalMs);
    this.log.info(
      `ready: site ${accepted.siteId}, protocol v${accepted.protocolVersion}, heartbeat every ` +
        `${accepted.heartbeatIntervalMs} ms` +
        (accepted.jobs?.length ? `, ${accepted.jobs.length} in-flight job(s) reconciled` : ''),
    );
    for (const w of [...this.readyWaiters]) w.resolve();
    this.readyWaiters.clear();
    this.events.emit('ready', accepted);
  }

  private onDisconnect(reason: string): void {
    this.ready = false;
    clearInterval(this.heartbeatTimer);
    this.events.emit('disconnected', reason);
    if (this.stopping) return;
    this.log.warn(`disconnected: ${reason}`);
    // socket.io reconnects by itself after a transport failure, not when the server closed the connection
    if (reason === 'io server disconnect') this.scheduleReconnect();
  }

  private onConnectError(err: Error & { data?: { code?: string } }): void {
    if (this.stopping) return;
    const code = err.data?.code;
    if (code && FATAL_HANDSHAKE_CODES.has(code)) {
      this.failFatal(
        new AgentFatalError(code, `the coordinator refused this site's handshake: ${code}: ${err.message}`),
      );
      return;
    }
    this.log.warn(`cannot connect: ${code ? `${code}: ` : ''}${err.message}`);
    if (code === 'expired')
      this.log.warn("the site assertion was refused as expired: check this machine's clock");
    // refused by the server's middleware: socket.io does not retry those by itself
    if (!this.socket?.active) this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopping || this.reconnectTimer) return;
    const initial = this.options.reconnect?.initialMs ?? 500;
    const max = this.options.reconnect?.maxMs ?? 30_000;
    const delay =
      Math.min(max, initial * 2 ** Math.min(this.reconnectAttempts++, 20)) * (0.75 + Math.random() / 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (!this.stopping && this.socket && !this.socket.connected && !this.socket.active)
        this.socket.connect();
    }, delay);
  }

  private failFatal(error: AgentFatalError): void {
    if (this.stopping) return;
    this.log.error(error.message);
    this.fatalError = error;
    this.events.emit('fatal', error);
    void this.stop(`fatal: ${error.code}`);
  }

  private startHeartbeats(intervalMs: number): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => void this.beat(), intervalMs);
    this.heartbeatTimer.unref();
  }

  private async beat(): Promise<void> {
    if (!this.ready) return;
    const jobs = [...this.active.values()].filter((a) => a.accepted).slice(0, 64);
    const usage = process.memoryUsage();
    let raw: unknown;
    try {
      raw = await this.emitter!.emitWithAck(
        'heartbeat',
        {
          seq: ++this.heartbeatSeq,
          sentAt: this.clock.now(),
          activeJobs: jobs.map((a) => ({ jobId: a.record.job.id, attempt: a.record.job.attempt })),
          load: { cpu: Math.min(1, cpuLoad()), rssMb: Math.round(usage.rss / 2 ** 20) },
        },
        this.requestTimeoutMs,
      );
    } catch (error) {
      this.log.debug(`heartbeat: ${(error as Error).message}`);
      return;
    }
    const parsed = siteToServerReplySchemas.heartbeat.safeParse(raw);
    if (!parsed.success || !parsed.data.ok) return;
    for (const jobId of parsed.data.leaseLost ?? []) {
      const a = this.active.get(jobId);
      if (a) {
        this.log.warn(`job ${jobId}: the coordinator no longer holds our lease; stopping it`);
        this.abortJob(a, 'lease_lost');
      }
    }
  }

  // ------------------------------------------------------------------------------------------ in-flight jobs

  private inFlightReport(): { inFlight?: InFlightJob[] } {
    const out: InFlightJob[] = [];
    const stateOf = (r: JobRecord, uploading: boolean): InFlightJob['state'] =>
      r.state === 'accepting'
        ? 'assigned'
        : r.state === 'reporting'
          ? 'done'
          : r.state === 'failing'
            ? 'failed'
            : uploading
              ? 'uploading'
              : 'running';
    for (const a of this.active.values()) {
      out.push({
        jobId: a.record.job.id,
        attempt: a.record.job.attempt,
        state: stateOf(a.record, a.uploading > 0),
      });
    }
    for (const r of this.pending.values()) {
      out.push({ jobId: r.job.id, attempt: r.job.attempt, state: stateOf(r, false) });
    }
    return out.length ? { inFlight: out.slice(0, 64) } : {};
  }

  /** Applies the coordinator's word on the jobs the hello reported. */
  private async reconcile(actions: readonly JobResume[]): Promise<void> {
    for (const action of actions) {
      const a = this.active.get(action.jobId);
      const p = this.pending.get(action.jobId);
      if (action.action === 'resume') {
        if (a || !p || p.job.attempt !== action.attempt) continue;
        this.pending.delete(action.jobId);
        this.resume(p);
        continue;
      }
      if (a && a.record.job.attempt === action.attempt) {
        this.log.info(`job ${action.jobId}: the coordinator says ${action.action}; stopping it`);
        this.abortJob(a, action.action === 'done' ? 'done' : 'abandoned');
      }
      if (p) {
        this.pending.delete(action.jobId);
        this.log.info(`job ${action.jobId} (from the previous run): ${action.action}`);
        await this.forget(action.jobId);
        this.events.emit('job:abandoned', { job: p.job, reason: action.action });
      }
    }
  }

  private track(record: JobRecord, accepted: boolean): ActiveJob {
    const a: ActiveJob = {
      record,
      controller: new AbortController(),
      accepted,
      uploading: 0,
      progress: { sending: false, lastSent: -Infinity },
    };
    this.active.set(record.job.id, a);
    return a;
  }

  /** A job from the previous run that the coordinator lets us continue. */
  private resume(record: JobRecord): void {
    const a = this.track(record, true);
    this.log.info(
      `job ${record.job.id} (${record.job.kind}) attempt ${record.job.attempt}: resuming (${record.state})`,
    );
    this.events.emit('job:resumed', record.job);
    if (record.state === 'reporting') a.settled = this.deliverResult(a);
    else if (record.state === 'failing') a.settled = this.deliverFailure(a);
    else {
      const handler = this.handlers.get(record.job.kind);
      a.settled = handler
        ? this.save(a, 'running').then(() => this.runHandler(a, handler))
        : this.failJob(a, new JobError('unsupported', `this agent no longer runs ${record.job.kind} jobs`));
    }
  }

  private onOffer(job: OfferedJob): { ok: true } {
    if (this.stopping) throw new ProtocolError('busy', 'the site agent is stopping', true);
    const existing = this.active.get(job.id);
    if (existing) {
      if (existing.record.job.attempt >= job.attempt) return { ok: true }; // a repeated offer of a job we hold
      // an older attempt is still winding down (reporting its end, which the coordinator has recorded, or it
      // would not offer the next attempt): the new attempt takes its place
      this.active.delete(job.id);
      this.abortJob(existing, 'abandoned');
    }
    const handler = this.handlers.get(job.kind);
    if (!handler) throw new ProtocolError('declined', `this site runs no ${job.kind} jobs`);
    const working = [...this.active.values()].filter(
      (a) => a.record.state === 'accepting' || a.record.state === 'running',
    );
    if (working.length >= this.concurrency) {
      this.declinedBusy = true; // ask for work again (a heartbeat) once a slot frees up
      throw new ProtocolError('busy', `already running ${working.length} job(s)`, true);
    }
    const stale = this.pending.get(job.id);
    if (stale) this.pending.delete(job.id); // offered again: the coordinator requeued it
    const a = this.track({ version: 1, job, state: 'accepting', uploads: {}, updatedAt: Date.now() }, false);
    a.settled = this.acceptAndRun(a, handler);
    return { ok: true };
  }

  private async acceptAndRun(a: ActiveJob, handler: JobHandler): Promise<void> {
    const { job } = a.record;
    try {
      await this.store.save(a.record);
      await this.request(
        'job:accept',
        { jobId: job.id, attempt: job.attempt },
        { signal: a.controller.signal },
      );
      a.accepted = true;
      await this.save(a, 'running');
    } catch (error) {
      if (this.isStop(a, error)) return this.settle(a, true);
      this.log.warn(`job ${job.id}: not accepted: ${(error as Error).message}`);
      return this.settle(a, false);
    }
    this.log.info(`job ${job.id} (${job.kind}) attempt ${job.attempt}: accepted`);
    this.events.emit('job:accepted', job);
    await this.runHandler(a, handler);
  }

  private async runHandler(a: ActiveJob, handler: JobHandler): Promise<void> {
    const { job } = a.record;
    const workDir = path.join(this.paths.work, job.id);
    let outcome;
    try {
      await mkdir(workDir, { recursive: true, mode: 0o700 });
      outcome = await handler(this.context(a, workDir));
      a.controller.signal.throwIfAborted();
    } catch (error) {
      if (a.controller.signal.aborted) return this.settleAborted(a);
      return this.failJob(a, error);
    }
    const outputs =
      outcome.outputs ??
      Object.entries(a.record.uploads)
        .filter(([, u]) => u.committed)
        .map(([role, u]) => ({ role, sha256: u.sha256, size: u.size }));
    const parsed = jobResultSchema.safeParse({
      jobId: job.id,
      attempt: job.attempt,
      outputs,
      ...(outcome.metrics ? { metrics: outcome.metrics } : {}),
      ...(outcome.summary ? { summary: outcome.summary } : {}),
    });
    if (!parsed.success) {
      return this.failJob(
        a,
        new JobError('bad_result', `the handler's result does not fit the protocol: ${parsed.error.message}`),
      );
    }
    a.record.result = parsed.data;
    await this.save(a, 'reporting');
    await this.deliverResult(a);
  }

  private async failJob(a: ActiveJob, error: unknown): Promise<void> {
    const { job } = a.record;
    const detail = (error as Error)?.message ?? String(error);
    const failure: JobFailed = {
      jobId: job.id,
      attempt: job.attempt,
      code: error instanceof JobError ? error.code.slice(0, 64) : 'handler_error',
      // The coordinator stores and shows this: never the site's folders, other absolute paths or subject ids.
      message: scrubPrivateDetails(detail, [
        this.options.site.dataDir,
        path.resolve(this.options.site.dataDir),
        this.options.stateDir,
        path.resolve(this.options.stateDir),
      ]).slice(0, 2000),
      retryable: error instanceof JobError ? error.retryable : true,
    };
    // The full detail stays in the site's own log.
    this.log.warn(`job ${job.id} (${job.kind}) attempt ${job.attempt} failed: ${failure.code}: ${detail}`);
    a.record.failure = failure;
    await this.save(a, 'failing').catch(() => undefined);
    await this.deliverFailure(a);
  }

  private async deliverResult(a: ActiveJob): Promise<void> {
    const { job, result } = a.record;
    try {
      await this.request('job:result', result!, { signal: a.controller.signal });
    } catch (error) {
      if (this.isStop(a, error)) return this.settle(a, true);
      if (error instanceof RemoteError && error.code === 'unknown_transfer') {
        return this.failJob(a, new JobError('result_refused', error.message, true));
      }
      this.log.warn(`job ${job.id}: result not recorded: ${(error as Error).message}`);
      return this.settle(a, false);
    }
    this.log.info(
      `job ${job.id} (${job.kind}) attempt ${job.attempt}: done, ${result!.outputs.length} output(s)`,
    );
    this.events.emit('job:done', { job, result: result! });
    await this.settle(a, false);
  }

  private async deliverFailure(a: ActiveJob): Promise<void> {
    const { job, failure } = a.record;
    try {
      await this.request('job:failed', failure!, { signal: a.controller.signal });
      this.events.emit('job:failed', { job, failure: failure! });
    } catch (error) {
      if (this.isStop(a, error)) return this.settle(a, true);
      this.log.warn(`job ${job.id}: failure not recorded: ${(error as Error).message}`);
    }
    await this.settle(a, false);
  }

  private settleAborted(a: ActiveJob): Promise<void> {
    const reason = (a.controller.signal.reason as JobAborted | undefined)?.reason ?? 'abandoned';
    if (SETTLED_REASONS.has(reason)) {
      this.log.info(`job ${a.record.job.id}: stopped (${reason})`);
      this.events.emit('job:abandoned', { job: a.record.job, reason });
    }
    return this.settle(a, reason === 'stopping');
  }

  /** Done with a job in this process: forget it, or keep its record for the next run (`keep`). */
  private async settle(a: ActiveJob, keep: boolean): Promise<void> {
    clearTimeout(a.progress.timer);
    const id = a.record.job.id;
    const current = this.active.get(id);
    // a newer attempt of the same job may have taken over: its record and work dir are not ours to remove
    if (!keep && (current === a || current === undefined)) await this.forget(id);
    if (this.active.get(id) === a) this.active.delete(id);
    if (this.declinedBusy && this.ready && !this.stopping) {
      this.declinedBusy = false;
      void this.beat(); // the coordinator offers waiting jobs at every heartbeat
    }
  }

  private async forget(jobId: string): Promise<void> {
    await this.store
      .remove(jobId)
      .catch((e: unknown) => this.log.warn(`removing job ${jobId}: ${String(e)}`));
    await rm(path.join(this.paths.work, jobId), { recursive: true, force: true }).catch(() => undefined);
  }

  private isStop(a: ActiveJob, error: unknown): boolean {
    return (
      error instanceof AgentStoppedError ||
      ((a.controller.signal.reason as JobAborted | undefined)?.reason === 'stopping' &&
        a.controller.signal.aborted)
    );
  }

  private abortJob(a: ActiveJob, reason: AbortReason): void {
    if (!a.controller.signal.aborted) a.controller.abort(new JobAborted(reason));
  }

  private async save(a: ActiveJob, state: JobRecord['state']): Promise<void> {
    a.record.state = state;
    await this.store.save(a.record);
  }

  // ------------------------------------------------------------------------------------------ handler context

  private context(a: ActiveJob, workDir: string): JobContext {
    return {
      job: a.record.job,
      signal: a.controller.signal,
      workDir,
      log: this.log,
      progress: (fraction, detail) => this.reportProgress(a, fraction, detail),
      upload: (source, options) => this.upload(a, source, options),
      download: (input) => this.download(a, input),
      privateSlices: (size, options) => this.privateSlices.forSize(size, options),
    };
  }

  private reportProgress(a: ActiveJob, fraction: number, detail: JobProgressDetail = {}): void {
    const metrics = detail.metrics
      ? Object.fromEntries(
          Object.entries(detail.metrics)
            .filter(([k, v]) => Number.isFinite(v) && k.length <= 64)
            .slice(0, 256),
        )
      : undefined;
    a.progress.latest = {
      jobId: a.record.job.id,
      attempt: a.record.job.attempt,
      fraction: Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0)),
      ...(detail.stage !== undefined ? { stage: detail.stage.slice(0, 64) } : {}),
      ...(detail.message !== undefined ? { message: detail.message.slice(0, 500) } : {}),
      ...(metrics ? { metrics } : {}),
    };
    this.flushProgress(a);
  }

  private flushProgress(a: ActiveJob): void {
    const p = a.progress;
    if (p.sending || p.timer || !p.latest || a.controller.signal.aborted) return;
    const wait = p.lastSent + this.progressIntervalMs - performance.now();
    if (wait > 0) {
      p.timer = setTimeout(() => {
        p.timer = undefined;
        this.flushProgress(a);
      }, wait);
      return;
    }
    const msg = p.latest;
    p.latest = undefined;
    if (!this.ready || !a.accepted) return; // dropped: a later report (or a heartbeat) keeps the lease
    p.sending = true;
    p.lastSent = performance.now();
    this.request('job:progress', msg, { signal: a.controller.signal, once: true })
      .catch((error: unknown) => {
        if (error instanceof RemoteError && (error.code === 'lease_lost' || error.code === 'unknown_job')) {
          this.log.warn(`job ${msg.jobId}: ${error.message}`);
          this.abortJob(a, 'lease_lost');
        }
      })
      .finally(() => {
        p.sending = false;
        if (p.latest) this.flushProgress(a);
      });
  }

  private async upload(a: ActiveJob, source: UploadSource, options: UploadOptions): Promise<JobOutput> {
    const { job } = a.record;
    const signal = a.controller.signal;
    const role = options.role;
    if (!role || role.length > 64)
      throw new JobError('bad_upload', 'an upload needs a role of 1-64 characters');
    const kind = options.kind ?? 'job-output';
    a.uploading++;
    let chunks: Awaited<ReturnType<typeof fileChunkSource>> | undefined;
    // The bytes being sent are kept in the job's work dir under their transfer id (a hard link to the handler's
    // output when possible), so that an agent killed mid-upload can resume the same transfer after a restart.
    const kept = (transferId: string) => path.join(this.paths.work, job.id, '.uploads', transferId);
    let file: string | undefined;
    try {
      signal.throwIfAborted();
      const uploadsDir = path.dirname(kept('x'));
      await mkdir(uploadsDir, { recursive: true, mode: 0o700 });
      file = kept(randomUUID());
      if ('file' in source) await keepFile(source.file, file);
      else await writeFile(file, source.buffer, { mode: 0o600 });
      chunks = await fileChunkSource(file);
      // What this run produced is what gets uploaded: a rerun (after a restart) may have other bytes than the
      // earlier run, e.g. a pre-check that now withholds more samples.
      const sha256 = await chunks.sha256();
      const size = chunks.size;
      signal.throwIfAborted();
      const earlier = a.record.uploads[role];
      const same = earlier && earlier.kind === kind && earlier.sha256 === sha256 && earlier.size === size;
      if (same && earlier.committed) return { role, sha256, size }; // the coordinator holds these bytes already
      let entry: JobRecord['uploads'][string];
      let superseded: string | undefined;
      if (same) {
        // the same bytes as the transfer begun before: resume it (the receiver keeps the chunks it acknowledged)
        entry = earlier;
        await rename(file, kept(entry.transferId)); // the handle stays on the same inode
        file = kept(entry.transferId);
        this.log.info(`job ${job.id}: resuming the ${role} upload begun before (${size} bytes)`);
      } else {
        if (earlier) {
          this.log.info(
            `job ${job.id}: the ${role} output differs from the one ${earlier.committed ? 'uploaded' : 'begun'} ` +
              `before; uploading the new one`,
          );
          await rm(kept(earlier.transferId), { force: true }).catch(() => undefined);
          if (!earlier.committed) superseded = earlier.transferId;
        }
        entry = { transferId: path.basename(file), sha256, size, kind, committed: false };
      }
      // an attempt that was aborted or replaced (a newer attempt of the job took over) must not touch the record
      await this.saveRecord(a, () => (a.record.uploads[role] = entry));
      const sender = new TransferSender({
        chunkSize: this.options.upload?.chunkSize,
        window: this.options.upload?.window,
        clock: systemClock, // measures elapsed time and throughput
        onProgress: (progress) => {
          this.events.emit('upload:progress', { jobId: job.id, role, progress });
          options.onProgress?.(progress);
        },
      });
      if (superseded) {
        // best effort: the coordinator drops the staged chunks (its sweeper removes them otherwise)
        const old = superseded;
        await this.transferEmitter(signal)
          .then((emitter) => sender.abort(emitter, old, 'superseded by a rerun with other bytes'))
          .catch((error: unknown) => {
            signal.throwIfAborted();
            this.log.warn(`job ${job.id}: could not abort the superseded ${role} transfer: ${String(error)}`);
          });
      }
      let result: SendResult;
      try {
        result = await sender.sendResumable(
          () => this.transferEmitter(signal),
          chunks,
          {
            transferId: entry.transferId,
            kind,
            meta: { ...options.meta, jobId: job.id, attempt: job.attempt, role },
            signal,
          },
          { maxAttempts: 10_000 },
        );
      } catch (error) {
        signal.throwIfAborted();
        if (error instanceof TransferError && error.peerCode === 'lease_lost') {
          this.abortJob(a, 'lease_lost');
          signal.throwIfAborted();
        }
        throw error instanceof TransferError
          ? new JobError(`upload_${error.code}`, error.message, true)
          : error;
      }
      await this.saveRecord(a, () => (entry.committed = true));
      this.events.emit('upload:done', { jobId: job.id, role, result });
      this.log.info(
        `job ${job.id}: uploaded ${role} (${size} bytes, ${result.chunksSent} chunk message(s), ` +
          `${result.attempts} attempt(s), resumed from ${result.resumedFromBytes} bytes)`,
      );
      return { role, sha256, size };
    } finally {
      a.uploading--;
      await chunks?.close();
      // the kept copy is needed only while its transfer may still be resumed
      const entry = a.record.uploads[role];
      if (file && !(entry && !entry.committed && kept(entry.transferId) === file)) {
        await rm(file, { force: true }).catch(() => undefined);
      }
    }
  }

  /**
   * Changes and saves a job's record, only while the attempt still owns it: not aborted, and not replaced by a newer
   * attempt of the same job (records are keyed by job id, so a stale save would overwrite the newer attempt's).
   * Otherwise throws, and the handler winds down.
   */
  private async saveRecord(a: ActiveJob, change: () => void): Promise<void> {
    if (this.active.get(a.record.job.id) !== a) this.abortJob(a, 'abandoned');
    a.controller.signal.throwIfAborted();
    change();
    await this.store.save(a.record);
  }

  /** The emitter for a transfer attempt: once ready; refuses while not ready (never buffers); rate limited. */
  private async transferEmitter(signal: AbortSignal): Promise<AckEmitter> {
    await this.waitReady(signal);
    const inner = this.emitter!;
    const guarded: AckEmitter = {
      emitWithAck: (event, payload, timeoutMs) =>
        this.ready
          ? inner.emitWithAck(event, payload, timeoutMs)
          : Promise.reject(new TransportError('disconnected', `cannot send ${event}: not connected`)),
    };
    return this.bucket ? rateLimitedEmitter(guarded, this.bucket) : guarded;
  }

  private async download(a: ActiveJob, ref: string): Promise<string> {
    const { job } = a.record;
    const input = job.inputs?.find((i) => i.role === ref || i.sha256 === ref);
    if (!input) throw new JobError('unknown_input', `job ${job.id} has no input ${ref}`);
    const file = this.downloads.pathOf(input.sha256);
    if (await this.downloads.has(input.sha256)) return file;
    await this.request(
      'blob:fetch',
      { jobId: job.id, attempt: job.attempt, sha256: input.sha256 },
      { signal: a.controller.signal, timeoutMs: 60_000 + Math.ceil(input.size / 1e6) * 1000 },
    ).catch((error: unknown) => {
      if (error instanceof RemoteError && error.code === 'lease_lost') this.abortJob(a, 'lease_lost');
      a.controller.signal.throwIfAborted();
      throw error instanceof RemoteError
        ? new JobError(`download_${error.code}`, error.message, true)
        : error;
    });
    if (!(await this.downloads.has(input.sha256))) {
      throw new JobError('download_failed', `input ${input.role} did not arrive`, true);
    }
    return file;
  }

  // ------------------------------------------------------------------------------------------ requests

  /**
   * Sends a request once ready and returns the ok reply; retries over reconnects (and after retryable refusals)
   * until it is answered, unless `once`. An error reply becomes a RemoteError.
   */
  private async request<E extends keyof typeof siteToServerReplySchemas>(
    event: E,
    payload: unknown,
    opts: { signal?: AbortSignal; timeoutMs?: number; once?: boolean } = {},
  ): Promise<Extract<z.output<(typeof siteToServerReplySchemas)[E]>, { ok: true }>> {
    for (let attempt = 0; ; attempt++) {
      if (this.stopping) throw new AgentStoppedError('the agent is stopping');
      opts.signal?.throwIfAborted();
      await this.waitReady(opts.signal);
      let raw: unknown;
      try {
        raw = await this.emitter!.emitWithAck(event, payload, opts.timeoutMs ?? this.requestTimeoutMs);
      } catch (error) {
        if (opts.once) throw error;
        await this.sleep(Math.min(5_000, 100 * 2 ** attempt), opts.signal);
        continue;
      }
      const parsed = siteToServerReplySchemas[event].safeParse(raw);
      if (!parsed.success) throw new RemoteError('bad_reply', `${event}: unreadable ack`, false);
      const reply = parsed.data;
      if (reply.ok) return reply as Extract<z.output<(typeof siteToServerReplySchemas)[E]>, { ok: true }>;
      const retryable = reply.retryable === true || reply.code === 'not_ready' || reply.code === 'busy';
      if (!retryable || opts.once)
        throw new RemoteError(reply.code, `${event}: ${reply.code}: ${reply.message}`, retryable);
      await this.sleep(Math.min(5_000, 100 * 2 ** attempt), opts.signal);
    }
  }

  private sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** One-minute load average per core (0 where the platform has none). */
function cpuLoad(): number {
  return Math.max(0, (os.loadavg()[0] ?? 0) / Math.max(1, os.availableParallelism()));
}

/**
 * Keeps `file`'s bytes at `to`: a hard link (no copy; safe because outputs are written as new files and renamed into
 * place, never rewritten in place), or a copy where links are not possible (another file system, no permission).
 */
async function keepFile(file: string, to: string): Promise<void> {
  try {
    await link(file, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw error;
    await copyFile(file, to);
  }
}
