// A whole federation on this machine, every part a separate `fedsynth` process as an operator runs it: the
// coordinator (SQLite in its data dir, or PostgreSQL) on a fixed free loopback port, its admin account, and site
// agents enrolled with one-time tokens over REST. Used by `fedsynth demo` and by the process-level e2e tests (which
// kill and restart the coordinator on the same database and port, and kill, stop or restart site agents).
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { describeExit, type ManagedProcess, ProcessGroup } from './process-group.js';

/** A step failed: names the step and the log to read. */
export class DemoStepError extends Error {
  constructor(
    readonly step: string,
    message: string,
    readonly logFile?: string,
  ) {
    super(`${step}: ${message}${logFile ? ` (see ${logFile})` : ''}`);
    this.name = 'DemoStepError';
  }
}

export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface LocalFederationOptions {
  /** run folder: logs/, coordinator/ (data dir), sites/<name>/state */
  dir: string;
  /** coordinator database; default sqlite:<dir>/coordinator/coordinator.sqlite */
  db?: string;
  port?: number;
  group?: ProcessGroup;
  /** extra environment of every child (e.g. FEDSYNTH_TF_BACKEND) */
  env?: Record<string, string | undefined>;
  adminUsername?: string;
  coordinatorLogLevel?: string;
  siteLogLevel?: string;
}

export interface LocalSite {
  name: string;
  siteId: string;
  dataDir: string;
  stateDir: string;
  logFile: string;
  agent?: ManagedProcess;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
}

export class LocalFederation {
  readonly group: ProcessGroup;
  readonly dir: string;
  readonly dataDir: string;
  readonly db: string;
  readonly logsDir: string;
  readonly coordinatorLog: string;
  readonly adminUsername: string;
  readonly adminPassword = `demo-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`;
  readonly sites = new Map<string, LocalSite>();
  port = 0;
  coordinator?: ManagedProcess;
  private token?: string;
  private coordinatorStarts = 0;

  constructor(private readonly options: LocalFederationOptions) {
    this.group = options.group ?? new ProcessGroup();
    this.dir = path.resolve(options.dir);
    this.dataDir = path.join(this.dir, 'coordinator');
    this.db = options.db ?? `sqlite:${path.join(this.dataDir, 'coordinator.sqlite')}`;
    this.logsDir = path.join(this.dir, 'logs');
    this.coordinatorLog = path.join(this.logsDir, 'coordinator.log');
    this.adminUsername = options.adminUsername ?? 'demo-admin';
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Environment every child gets: the database URL goes by environment, not argv (it may hold a password). */
  private childEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
    return { FEDSYNTH_DB: this.db, ...this.options.env, ...extra };
  }

  /** `fedsynth admin create-user` on the coordinator's database (run before the coordinator starts). */
  async createAdmin(): Promise<void> {
    await mkdir(this.dataDir, { recursive: true });
    const logFile = path.join(this.logsDir, 'admin.log');
    const run = await this.group.runFedsynth(
      'admin create-user',
      ['admin', 'create-user', '--username', this.adminUsername, '--role', 'admin', '--password-stdin'],
      { logFile, env: this.childEnv({ FEDSYNTH_DATA_DIR: this.dataDir }), stdin: this.adminPassword + '\n' },
    );
    if (run.code !== 0)
      throw new DemoStepError('create the demo admin', `${describeExit(run)}: ${run.output.trim()}`, logFile);
  }

  /** Starts (or restarts, on the same database, data dir and port) the coordinator and waits for /health. */
  async startCoordinator(timeoutMs = 60_000): Promise<ManagedProcess> {
    if (this.coordinator && !this.coordinator.exit)
      throw new Error('the coordinator is already running (pid ' + this.coordinator.pid + ')');
    this.port ||= this.options.port ?? (await freeLoopbackPort());
    await mkdir(this.dataDir, { recursive: true });
    this.coordinatorStarts++;
    const p = this.group.spawnFedsynth(
      'coordinator',
      [
        'coordinator',
        '--port',
        String(this.port),
        '--host',
        '127.0.0.1',
        '--data-dir',
        this.dataDir,
        '--public-url',
        this.url,
        '--log-level',
        this.options.coordinatorLogLevel ?? 'info',
      ],
      { logFile: this.coordinatorLog, env: this.childEnv() },
    );
    this.coordinator = p;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (p.exit)
        throw new DemoStepError(
          'start the coordinator',
          `it stopped (${describeExit(p.exit)}) before answering /health`,
          p.logFile,
        );
      try {
        const res = await fetch(`${this.url}/health`, { signal: AbortSignal.timeout(2_000) });
        if (res.ok) return p;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline)
        throw new DemoStepError(
          'start the coordinator',
          `no healthy answer within ${timeoutMs / 1000} s`,
          p.logFile,
        );
      await sleep(150);
    }
  }

  /** SIGKILL the coordinator (a crash: nothing is flushed or closed). */
  async killCoordinator(): Promise<void> {
    if (this.coordinator) await this.group.kill(this.coordinator);
  }

  async stopCoordinator(): Promise<void> {
    if (this.coordinator) await this.group.stop(this.coordinator);
  }

  /** POST /api/auth/login as the demo admin (again after a restart is not needed: the key is on disk). */
  async login(): Promise<string> {
    const res = await this.request<{ accessToken?: string }>('POST', '/api/auth/login', {
      body: { username: this.adminUsername, password: this.adminPassword },
      auth: false,
    });
    if (res.status !== 200 || !res.body.accessToken)
      throw new DemoStepError('log in as the demo admin', `HTTP ${res.status} ${JSON.stringify(res.body)}`);
    this.token = res.body.accessToken;
    return this.token;
  }

  /** A JSON request to the coordinator, as the admin unless `auth: false`. Never throws on an HTTP status. */
  async request<T = Record<string, unknown>>(
    method: string,
    url: string,
    options: { body?: unknown; auth?: boolean; token?: string; timeoutMs?: number } = {},
  ): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const token = options.token ?? (options.auth === false ? undefined : this.token);
    if (token) headers.authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.url + url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON
    }
    return { status: res.status, body: body as T };
  }

  /** Like request, but any status other than `expect` is an error naming the step. */
  async call<T = Record<string, unknown>>(
    step: string,
    method: string,
    url: string,
    body?: unknown,
    expect: number | number[] = [200, 201],
  ): Promise<T> {
    let res: ApiResponse<T>;
    try {
      res = await this.request<T>(method, url, { body });
    } catch (error) {
      throw new DemoStepError(step, `${method} ${url}: ${(error as Error).message}`, this.coordinatorLog);
    }
    const ok = Array.isArray(expect) ? expect.includes(res.status) : res.status === expect;
    if (!ok)
      throw new DemoStepError(
        step,
        `${method} ${url} answered HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 600)}`,
        this.coordinatorLog,
      );
    return res.body;
  }

  /** POST /api/sites (a pending site and its one-time token), then `fedsynth site enroll` as a process. */
  async addSite(name: string, dataDir: string): Promise<LocalSite> {
    const created = await this.call<{ site: { id: string }; enrollmentToken: string }>(
      `create site ${name}`,
      'POST',
      '/api/sites',
      { name },
    );
    const stateDir = path.join(this.dir, 'sites', name, 'state');
    const logFile = path.join(this.logsDir, `${name}.log`);
    const run = await this.group.runFedsynth(
      `${name} enroll`,
      [
        'site',
        'enroll',
        '--coordinator',
        this.url,
        '--site-id',
        created.site.id,
        '--data',
        path.resolve(dataDir),
        '--state',
        stateDir,
        '--name',
        name,
      ],
      // the token by environment: argv is visible to ps
      { logFile, env: this.childEnv({ FEDSYNTH_ENROLLMENT_TOKEN: created.enrollmentToken }) },
    );
    if (run.code !== 0)
      throw new DemoStepError(`enrol ${name}`, `${describeExit(run)}: ${run.output.trim()}`, logFile);
    const site: LocalSite = {
      name,
      siteId: created.site.id,
      dataDir: path.resolve(dataDir),
      stateDir,
      logFile,
    };
    this.sites.set(name, site);
    return site;
  }

  /** `fedsynth site run` for a site, in the background (its log appended to logs/<name>.log). */
  startAgent(name: string, extraArgs: string[] = []): ManagedProcess {
    const site = this.siteNamed(name);
    if (site.agent && !site.agent.exit) throw new Error(`${name}'s agent is already running`);
    site.agent = this.group.spawnFedsynth(
      `${name} agent`,
      [
        'site',
        'run',
        '--state',
        site.stateDir,
        '--log-level',
        this.options.siteLogLevel ?? 'info',
        ...extraArgs,
      ],
      { logFile: site.logFile, env: this.childEnv() },
    );
    return site.agent;
  }

  /** Stops a site's agent (SIGTERM: it finishes cleanly) and forgets it. */
  async stopAgent(name: string): Promise<void> {
    const site = this.siteNamed(name);
    const agent = site.agent;
    site.agent = undefined;
    if (agent) await this.group.stop(agent);
  }

  siteNamed(name: string): LocalSite {
    const site = this.sites.get(name);
    if (!site) throw new Error(`no site named ${name}`);
    return site;
  }

  /** Sites connected to the coordinator now (its fedsynth_sites_connected gauge). */
  async sitesConnected(): Promise<number> {
    const res = await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
    const match = /^fedsynth_sites_connected(?:\{[^}]*\})?\s+(\S+)/m.exec(await res.text());
    return match ? Number(match[1]) : 0;
  }

  /** Waits until `n` sites are connected; fails early, naming the log, when an agent exits. */
  async waitForSites(n: number, timeoutMs = 120_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const site of this.sites.values()) {
        if (site.agent?.exit)
          throw new DemoStepError(
            `run ${site.name}'s agent`,
            `it stopped (${describeExit(site.agent.exit)})`,
            site.logFile,
          );
      }
      this.assertCoordinatorAlive('wait for the sites to connect');
      if ((await this.sitesConnected().catch(() => 0)) >= n) return;
      if (Date.now() > deadline)
        throw new DemoStepError(
          'wait for the sites to connect',
          `${n} site(s) not connected within ${timeoutMs / 1000} s`,
          this.logsDir,
        );
      await sleep(250);
    }
  }

  assertCoordinatorAlive(step: string): void {
    if (this.coordinator?.exit)
      throw new DemoStepError(
        step,
        `the coordinator stopped (${describeExit(this.coordinator.exit)})`,
        this.coordinatorLog,
      );
  }

  get restarts(): number {
    return Math.max(0, this.coordinatorStarts - 1);
  }

  /** Stops every process (agents first); safe to call twice. */
  close(): Promise<void> {
    return this.group.close();
  }
}
