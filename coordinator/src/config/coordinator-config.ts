// The coordinator's configuration: one zod-validated object, resolved once at start from explicit options (CLI
// flags), then FEDSYNTH_* environment variables, then defaults. A bad value refuses the start, naming the key,
// where the value came from and the value itself (database passwords masked).
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type DatabaseConfig =
  | { readonly dialect: 'sqlite'; /** absolute path, or `:memory:` */ readonly path: string }
  | {
      readonly dialect: 'postgres';
      /** connection URL without the `schema` query parameter */
      readonly url: string;
      /** optional schema (from `?schema=NAME`); it must exist; tables and the migrations table go there */
      readonly schema?: string;
    };

export interface CoordinatorConfig {
  /** TCP port of the HTTP server (0 = any free port). Default 8080. */
  readonly port: number;
  /** Address the HTTP server binds to. Default 0.0.0.0. */
  readonly host: string;
  readonly db: DatabaseConfig;
  /** Absolute path of the coordinator's own files (signing key, default SQLite database). */
  readonly dataDir: string;
  /** URL under which sites and users reach the coordinator. Default http://<hostname>:<port>. */
  readonly publicUrl: string;
  /**
   * The `aud` that site proofs and assertions must carry, and the `iss` of user tokens.
   * Default `fedsynth-coordinator:<publicUrl host>:<publicUrl port>` (see {@link coordinatorAudienceForUrl}).
   */
  readonly audience: string;
  readonly logLevel: LogLevel;
  /** Lifetime of a site enrolment token. Default 24 h. */
  readonly enrollmentTokenTtlSeconds: number;
  /** Lifetime of a user access token. Default 1 h. */
  readonly userTokenTtlSeconds: number;
}

/** Raw values, as given on a command line or in code; strings are parsed. */
export interface CoordinatorConfigInput {
  port?: number | string;
  host?: string;
  /** `sqlite:PATH`, `sqlite::memory:` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME]` */
  db?: string;
  dataDir?: string;
  publicUrl?: string;
  audience?: string;
  logLevel?: string;
  enrollmentTokenTtlSeconds?: number | string;
  userTokenTtlSeconds?: number | string;
}

export type ConfigKey = keyof CoordinatorConfigInput;

/** The environment variable behind each key. */
export const CONFIG_ENV_VARS: Readonly<Record<ConfigKey, string>> = {
  port: 'FEDSYNTH_PORT',
  host: 'FEDSYNTH_HOST',
  db: 'FEDSYNTH_DB',
  dataDir: 'FEDSYNTH_DATA_DIR',
  publicUrl: 'FEDSYNTH_PUBLIC_URL',
  audience: 'FEDSYNTH_AUDIENCE',
  logLevel: 'FEDSYNTH_LOG_LEVEL',
  enrollmentTokenTtlSeconds: 'FEDSYNTH_ENROLLMENT_TOKEN_TTL_SECONDS',
  userTokenTtlSeconds: 'FEDSYNTH_USER_TOKEN_TTL_SECONDS',
};

export const DEFAULT_PORT = 8080;
export const DEFAULT_DATA_DIR = '.fedsynth/coordinator';
export const AUDIENCE_PREFIX = 'fedsynth-coordinator';

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly problems: readonly string[] = [message],
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ResolveConfigOptions {
  /** Environment to read FEDSYNTH_* from; none by default (pass process.env explicitly). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Base of relative paths. Default process.cwd(). */
  cwd?: string;
  /** Host name used in the default public URL. Default os.hostname(). */
  hostname?: string;
}

/**
 * The audience a site derives from the coordinator URL it was given:
 * `fedsynth-coordinator:<lower-case host>:<port>` (port 80/443 when the URL has none).
 */
export function coordinatorAudienceForUrl(url: string | URL): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  const port = u.port || (u.protocol === 'https:' ? '443' : '80');
  return `${AUDIENCE_PREFIX}:${u.hostname.toLowerCase()}:${port}`;
}

/** `postgres://user:secret@host/db` → `postgres://user:***@host/db`, for messages and logs. */
export function maskDatabaseUrl(value: string): string {
  return value.replace(/^(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

/** A printable form of the database setting (password masked). */
export function describeDatabase(db: DatabaseConfig): string {
  if (db.dialect === 'sqlite') return `sqlite:${db.path}`;
  return maskDatabaseUrl(db.url) + (db.schema ? ` (schema ${db.schema})` : '');
}

const integer = (min: number, max: number) => {
  const message = `must be an integer from ${min} to ${max}`;
  return z.union([z.number(), z.string()]).transform((value, ctx) => {
    const n = typeof value === 'number' ? value : /^\s*[+-]?\d+\s*$/.test(value) ? Number(value) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return n;
  });
};

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const DB_FORMAT = 'must be sqlite:PATH or postgres://USER:PASSWORD@HOST[:PORT]/DATABASE[?schema=NAME]';

function parseDatabase(value: string, cwd: string, ctx: z.RefinementCtx): DatabaseConfig | typeof z.NEVER {
  if (value.startsWith('sqlite:')) {
    const file = value.slice('sqlite:'.length);
    if (file === '') {
      ctx.addIssue({
        code: 'custom',
        message: 'sqlite: needs a file path, e.g. sqlite:./coordinator.sqlite',
      });
      return z.NEVER;
    }
    return { dialect: 'sqlite', path: file === ':memory:' ? file : path.resolve(cwd, file) };
  }
  if (/^postgres(ql)?:\/\//i.test(value)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      ctx.addIssue({ code: 'custom', message: `is not a valid URL; ${DB_FORMAT}` });
      return z.NEVER;
    }
    if (!url.hostname || url.pathname.length <= 1) {
      ctx.addIssue({ code: 'custom', message: `needs a host and a database name; ${DB_FORMAT}` });
      return z.NEVER;
    }
    const schema = url.searchParams.get('schema') ?? undefined;
    if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
      ctx.addIssue({
        code: 'custom',
        message: 'schema must be a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)',
      });
      return z.NEVER;
    }
    url.searchParams.delete('schema');
    return { dialect: 'postgres', url: url.toString(), ...(schema ? { schema } : {}) };
  }
  ctx.addIssue({ code: 'custom', message: DB_FORMAT });
  return z.NEVER;
}

function rawSchema(cwd: string) {
  return z.strictObject({
    port: integer(0, 65535).default(DEFAULT_PORT),
    host: z.string().trim().min(1, 'must not be empty').default('0.0.0.0'),
    db: z
      .string()
      .trim()
      .transform((v, ctx) => parseDatabase(v, cwd, ctx))
      .optional(),
    dataDir: z.string().trim().min(1, 'must not be empty').default(DEFAULT_DATA_DIR),
    publicUrl: z
      .string()
      .trim()
      .refine((v) => URL.canParse(v) && /^https?:$/.test(new URL(v).protocol), 'must be an http(s) URL')
      .optional(),
    audience: z
      .string()
      .trim()
      .regex(/^[\x21-\x7e]{1,200}$/, 'must be 1–200 printable characters without spaces')
      .optional(),
    logLevel: z
      .string()
      .trim()
      .toLowerCase()
      .pipe(z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }))
      .default('info'),
    enrollmentTokenTtlSeconds: integer(60, 30 * 24 * 3600).default(24 * 3600),
    userTokenTtlSeconds: integer(60, 24 * 3600).default(3600),
  });
}

const resolvedConfigs = new WeakSet<object>();

/** True for a configuration made by {@link resolveCoordinatorConfig} (as opposed to a raw input). */
export function isResolvedCoordinatorConfig(value: unknown): value is CoordinatorConfig {
  return typeof value === 'object' && value !== null && resolvedConfigs.has(value);
}

/**
 * Validates and completes the configuration. Throws a {@link ConfigError} naming every bad value.
 * Precedence: `input` (e.g. CLI flags) > `options.env` (FEDSYNTH_*) > defaults.
 */
export function resolveCoordinatorConfig(
  input: CoordinatorConfigInput = {},
  options: ResolveConfigOptions = {},
): CoordinatorConfig {
  const env = options.env ?? {};
  const cwd = options.cwd ?? process.cwd();
  const raw: Record<string, unknown> = {};
  const source: Record<string, string> = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    raw[key] = value;
    source[key] = key in CONFIG_ENV_VARS ? `option ${key}` : `unknown option ${key}`;
  }
  for (const [key, variable] of Object.entries(CONFIG_ENV_VARS)) {
    const value = env[variable];
    if (raw[key] === undefined && value !== undefined && value !== '') {
      raw[key] = value;
      source[key] = variable;
    }
  }
  const parsed = rawSchema(cwd).safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : String(issue.path[0] ?? '');
      if (issue.code === 'unrecognized_keys') return `unknown configuration key(s) ${key}`;
      const value = raw[key];
      const shown = typeof value === 'string' ? JSON.stringify(maskDatabaseUrl(value)) : String(value);
      return `${key} = ${shown} (from ${source[key] ?? 'default'}): ${issue.message}`;
    });
    throw new ConfigError(`invalid coordinator configuration: ${problems.join('; ')}`, problems);
  }
  const v = parsed.data;
  const dataDir = path.resolve(cwd, v.dataDir);
  const db: DatabaseConfig = v.db ?? { dialect: 'sqlite', path: path.join(dataDir, 'coordinator.sqlite') };
  const publicUrl = v.publicUrl ?? `http://${options.hostname ?? os.hostname()}:${v.port}`;
  const config: CoordinatorConfig = Object.freeze({
    port: v.port,
    host: v.host,
    db: Object.freeze(db),
    dataDir,
    publicUrl,
    audience: v.audience ?? coordinatorAudienceForUrl(publicUrl),
    logLevel: v.logLevel,
    enrollmentTokenTtlSeconds: v.enrollmentTokenTtlSeconds,
    userTokenTtlSeconds: v.userTokenTtlSeconds,
  });
  resolvedConfigs.add(config);
  return config;
}

/** Injection token of the resolved {@link CoordinatorConfig}. */
export const COORDINATOR_CONFIG = Symbol.for('fedsynth.coordinator.config');
