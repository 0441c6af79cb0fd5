// A whole federation for end-to-end specs: a real coordinator (HTTP + socket.io, SQLite file or a PostgreSQL schema,
// temp data dir, manual clock) on a fixed free port of 127.0.0.1, sites enrolled through the agent's own enrolment
// code over HTTP, agents in this process (sharing the coordinator's clock) or as `fedsynth site run` processes, raw
// socket.io clients for protocol-level checks, and a restart that keeps the database, data dir and port.
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { INestApplication } from '@nestjs/common';
import { ManualClock } from '@fedsynth/coordinator/core/clock';
import { BlobsService } from '@fedsynth/coordinator/blobs/blobs.service';
import { FederationGateway } from '@fedsynth/coordinator/federation/federation.gateway';
import { JobEvents } from '@fedsynth/coordinator/jobs/job-events';
import { JobsService } from '@fedsynth/coordinator/jobs/jobs.service';
import { startTestCoordinator, type TestCoordinator } from '@fedsynth/coordinator/testing/test-coordinator';
import {
  createTestDatabase,
  type TestDatabase,
  type TestDialect,
} from '@fedsynth/coordinator/testing/test-database';
import { type SiteKeyPair, createSiteAssertion, loadSiteKey } from '@fedsynth/common/identity/index';
import type { ServerToSiteEvents, SiteToServerEvents } from '@fedsynth/common/protocol/index';
import {
  JobHandlerRegistry,
  type SiteAgentOptions,
  type SiteState,
  SiteAgent,
  echoUploadHandler,
  enrollSite,
  machineCapabilities,
  streamLogger,
  silentLogger,
} from '@fedsynth/site-agent/agent/index';
import { io, type Socket } from 'socket.io-client';
import { DataSource } from 'typeorm';

export type RawSiteSocket = Socket<ServerToSiteEvents, SiteToServerEvents>;

/** Set FEDSYNTH_TEST_LOG=1 to see agent logs on stderr. */
const agentLogger = process.env.FEDSYNTH_TEST_LOG ? streamLogger('debug') : silentLogger;

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export interface EnrolledSite {
  name: string;
  siteId: string;
  stateDir: string;
  dataDir: string;
  state: SiteState;
  key: SiteKeyPair;
}

export interface Federation {
  dialect: TestDialect;
  port: number;
  url: string;
  clock: ManualClock;
  coordinator: TestCoordinator;
  app: INestApplication;
  admin: string;
  tmp: string;
  jobs(): JobsService;
  jobEvents(): JobEvents;
  blobs(): BlobsService;
  gateway(): FederationGateway;
  db(): DataSource;
  /** the coordinator clock in epoch ms (common's Clock shape) */
  commonClock: { now(): number };
  /** POST /api/sites as admin: a pending site and its one-time token */
  createSite(name: string): Promise<{ siteId: string; token: string }>;
  /** createSite + the agent's enrolSite over HTTP into a fresh state dir */
  enroll(name: string): Promise<EnrolledSite>;
  /** an in-process agent on the coordinator's clock (stopped at dispose) */
  startAgent(site: EnrolledSite, options?: Partial<SiteAgentOptions>): Promise<SiteAgent>;
  mint(
    site: { siteId: string; key: SiteKeyPair },
    extra?: { audience?: string; clockOffsetMs?: number },
  ): Promise<string>;
  /** a socket.io client with this auth; resolves connected, or with the connect_error code */
  connectRaw(auth: unknown): Promise<{ socket?: RawSiteSocket; code?: string }>;
  /** closes the coordinator and starts a new one on the same database, data dir, port and clock */
  restart(): Promise<void>;
  dispose(): Promise<void>;
}

export function testRegistry(): JobHandlerRegistry {
  return new JobHandlerRegistry().register('echo-upload', echoUploadHandler);
}

export async function startFederation(dialect: TestDialect): Promise<Federation> {
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-federation-'));
  const database: TestDatabase = await createTestDatabase(dialect);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const clock = new ManualClock(Date.now());
  const start = () => startTestCoordinator(dialect, { database, clock, config: { port, publicUrl: url } });
  let coordinator = await start();
  const admin = await coordinator.tokenFor('admin', 'root');
  const agents: SiteAgent[] = [];
  const raw: RawSiteSocket[] = [];
  const commonClock = { now: () => clock.now().getTime() };
  let sequence = 0;

  const fed: Federation = {
    dialect,
    port,
    url,
    clock,
    tmp,
    admin,
    commonClock,
    get coordinator() {
      return coordinator;
    },
    get app() {
      return coordinator.app;
    },
    jobs: () => coordinator.app.get(JobsService),
    jobEvents: () => coordinator.app.get(JobEvents),
    blobs: () => coordinator.app.get(BlobsService),
    gateway: () => coordinator.app.get(FederationGateway),
    db: () => coordinator.app.get(DataSource),
    async createSite(name) {
      const res = await coordinator.request('POST', '/api/sites', { token: admin, body: { name } });
      if (res.status !== 201)
        throw new Error(`create site ${name}: ${res.status} ${JSON.stringify(res.body)}`);
      return { siteId: res.body.site.id as string, token: res.body.enrollmentToken as string };
    },
    async enroll(name) {
      const { siteId, token } = await fed.createSite(name);
      const stateDir = path.join(tmp, `state-${++sequence}-${name}`);
      const dataDir = path.join(tmp, `data-${sequence}-${name}`);
      const state = await enrollSite({
        coordinatorUrl: url,
        siteId,
        token,
        dataDir,
        stateDir,
        name,
        clock: commonClock,
      });
      return { name, siteId, stateDir, dataDir, state, key: await loadSiteKey(stateDir) };
    },
    async startAgent(site, options = {}) {
      const agent = new SiteAgent({
        stateDir: site.stateDir,
        site: site.state,
        key: site.key,
        describe: async () => ({
          capabilities: machineCapabilities(['wasm']),
          dataset: {
            cases: 12,
            trainCases: 10,
            testCases: 2,
            slices: 900,
            trainSlices: 750,
            testSlices: 150,
          },
        }),
        handlers: testRegistry(),
        clock: commonClock,
        logger: agentLogger,
        reconnect: { initialMs: 50, maxMs: 300 },
        requestTimeoutMs: 10_000,
        progressIntervalMs: 50,
        stopTimeoutMs: 3_000,
        ...options,
      });
      agents.push(agent);
      await agent.start();
      return agent;
    },
    mint(site, extra = {}) {
      return createSiteAssertion({
        privateKey: site.key.privateKey,
        kid: site.key.kid,
        siteId: site.siteId,
        audience: extra.audience ?? fed.coordinator.config.audience,
        clock: { now: () => commonClock.now() + (extra.clockOffsetMs ?? 0) },
      });
    },
    connectRaw(auth) {
      return new Promise((resolve) => {
        const socket: RawSiteSocket = io(url, {
          transports: ['websocket'],
          reconnection: false,
          forceNew: true,
          auth: auth as never,
        });
        raw.push(socket);
        socket.once('connect', () => resolve({ socket }));
        socket.once('connect_error', (err: Error & { data?: { code?: string } }) => {
          socket.close();
          resolve({ code: err.data?.code ?? `transport: ${err.message}` });
        });
      });
    },
    async restart() {
      await coordinator.close();
      coordinator = await start();
    },
    async dispose() {
      for (const s of raw) s.close();
      await Promise.allSettled(agents.map((a) => a.stop('test over')));
      await coordinator.close().catch(() => undefined);
      await database.dispose();
      await rm(tmp, { recursive: true, force: true });
    },
  };
  return fed;
}

/** A valid hello for raw clients. */
export function rawHello(jobKinds: string[] = ['echo-upload'], extra: Record<string, unknown> = {}) {
  return {
    protocolVersion: 1,
    agentVersion: 'raw-test',
    capabilities: { backends: ['wasm'], cores: 2, jobKinds },
    dataset: { cases: 1, trainCases: 1, testCases: 0, slices: 10, trainSlices: 10, testSlices: 0 },
    ...extra,
  };
}

/** emitWithAck with a timeout, for raw clients (any event name, any payload). */
export function ask(
  socket: RawSiteSocket,
  event: string,
  ...args: unknown[]
): Promise<{ ok: boolean; code?: string } & Record<string, unknown>> {
  return (
    socket.timeout(10_000) as unknown as { emitWithAck(e: string, ...a: unknown[]): Promise<never> }
  ).emitWithAck(event, ...args);
}
