// `fedsynth admin ...`: administration straight through the coordinator's database (works with or without a
// running coordinator). Nest is loaded only when one of these commands runs.
import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { UsageError } from '../cli-errors.js';

interface CreateUserOptions {
  username: string;
  role: string;
  passwordStdin?: boolean;
  db?: string;
  dataDir?: string;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The message of a Nest HttpException (string or list of validation messages), or of any error. */
function messageOf(error: unknown): string {
  const response = (error as { getResponse?: () => unknown }).getResponse?.();
  const message = (response as { message?: unknown } | undefined)?.message;
  if (Array.isArray(message)) return message.join('; ');
  if (typeof message === 'string') return message;
  return (error as Error).message ?? String(error);
}

export function registerAdminCommand(program: Command): void {
  const admin = program
    .command('admin')
    .description('administer the coordinator through its database (user accounts)');
  admin
    .command('create-user')
    .description('create a coordinator user (runs the database migrations first)')
    .requiredOption('--username <name>', 'login name (2–64 of a-z 0-9 . _ -)')
    .requiredOption('--role <role>', 'admin | auditor | researcher')
    .option(
      '--password-stdin',
      'read the password from standard input (else a random one is generated and printed once)',
    )
    .option(
      '--db <url>',
      'sqlite:PATH or postgres://... (FEDSYNTH_DB, default sqlite:<data-dir>/coordinator.sqlite)',
    )
    .option(
      '--data-dir <dir>',
      'coordinator data directory (FEDSYNTH_DATA_DIR, default .fedsynth/coordinator)',
    )
    .action(async (opts: CreateUserOptions) => {
      let password: string;
      let generated = false;
      if (opts.passwordStdin) {
        password = (await readStdin()).replace(/\r?\n$/, '');
        if (!password) throw new UsageError('--password-stdin: standard input was empty');
      } else {
        password = randomBytes(18).toString('base64url');
        generated = true;
      }
      const { ConfigError, createUserOffline } = await import('@fedsynth/coordinator');
      let user;
      try {
        user = await createUserOffline(
          { db: opts.db, dataDir: opts.dataDir, logLevel: 'silent' },
          { username: opts.username, role: opts.role, password },
          { env: process.env },
        );
      } catch (error) {
        if (error instanceof ConfigError) throw new UsageError(error.message);
        const status = (error as { getStatus?: () => number }).getStatus?.();
        if (status === 400 || status === 409) throw new UsageError(messageOf(error));
        throw error;
      }
      console.log(`created ${user.role} ${user.username} (id ${user.id})`);
      if (generated) console.log(`password: ${password}`);
    });
}
