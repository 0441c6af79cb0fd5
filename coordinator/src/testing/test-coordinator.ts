// A real coordinator for specs: a fresh database (SQLite or a PostgreSQL schema), a temp data dir, a manual
// clock, HTTP on 127.0.0.1 with a free port, and small helpers to call it with fetch.
import type { DestinationStream } from 'pino';
import type { ModuleImport } from '../app.module.js';
import type { CoordinatorConfigInput } from '../config/coordinator-config.js';
import { ManualClock } from '../core/clock.js';
import { type CoordinatorApp, createCoordinatorApp } from '../create-coordinator-app.js';
import type { Role } from '../users/role.js';
import { UsersService } from '../users/users.service.js';
import { createTestDatabase, type TestDatabase, type TestDialect } from './test-database.js';

export const TEST_PUBLIC_URL = 'http://coordinator.test:8080';
export const TEST_AUDIENCE = 'fedsynth-coordinator:coordinator.test:8080';
export const TEST_PASSWORD = 'correct horse battery staple';

/** Parsed JSON of a response, typed loosely on purpose: specs assert on its fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
export type LooseJson = any;

export interface HttpResult<T = LooseJson> {
  status: number;
  body: T;
  headers: Headers;
}

export interface TestCoordinator extends CoordinatorApp {
  database: TestDatabase;
  clock: ManualClock;
  request<T = LooseJson>(
    method: string,
    path: string,
    options?: { body?: unknown; token?: string; headers?: Record<string, string> },
  ): Promise<HttpResult<T>>;
  /** Creates a user through UsersService (password TEST_PASSWORD unless given). */
  createUser(username: string, role: Role, password?: string): Promise<{ id: string }>;
  /** Logs in and returns the access token (throws unless 200). */
  login(username: string, password?: string): Promise<string>;
  /** Creates a user of that role and returns a token for it. */
  tokenFor(role: Role, username?: string): Promise<string>;
  dispose(): Promise<void>;
}

export interface StartTestCoordinatorOptions {
  config?: CoordinatorConfigInput;
  imports?: ModuleImport[];
  logDestination?: DestinationStream;
  /** reuse an existing database (restarts); it is then not disposed with the coordinator */
  database?: TestDatabase;
  clock?: ManualClock;
}

export async function startTestCoordinator(
  dialect: TestDialect,
  options: StartTestCoordinatorOptions = {},
): Promise<TestCoordinator> {
  const database = options.database ?? (await createTestDatabase(dialect));
  const clock = options.clock ?? new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
  let started: CoordinatorApp;
  try {
    started = await createCoordinatorApp(
      {
        port: 0,
        host: '127.0.0.1',
        db: database.db,
        dataDir: database.dataDir,
        publicUrl: TEST_PUBLIC_URL,
        logLevel: options.logDestination ? 'info' : 'silent',
        ...options.config,
      },
      { clock, logDestination: options.logDestination, imports: options.imports },
    );
  } catch (error) {
    if (!options.database) await database.dispose();
    throw error;
  }
  let counter = 0;
  const request: TestCoordinator['request'] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const res = await fetch(started.url + path, {
      method,
      headers,
      body: o.body === undefined ? undefined : JSON.stringify(o.body),
    });
    const text = await res.text();
    let body: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json') && text) body = JSON.parse(text);
    return { status: res.status, body: body as LooseJson, headers: res.headers };
  };
  const createUser = async (username: string, role: Role, password = TEST_PASSWORD) => {
    const user = await started.app.get(UsersService).create({ username, role, password });
    return { id: user.id };
  };
  const login = async (username: string, password = TEST_PASSWORD) => {
    const res = await request('POST', '/api/auth/login', { body: { username, password } });
    if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.accessToken as string;
  };
  return {
    ...started,
    database,
    clock,
    request,
    createUser,
    login,
    tokenFor: async (role, username = `${role}-${++counter}`) => {
      await createUser(username, role);
      return login(username);
    },
    dispose: async () => {
      await started.close();
      if (!options.database) await database.dispose();
    },
  };
}
