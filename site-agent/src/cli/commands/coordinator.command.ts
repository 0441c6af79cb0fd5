// `fedsynth coordinator`: runs the consortium coordinator. Nest is loaded only when this command runs.
import type { Command } from 'commander';
import { UsageError } from '../cli-errors.js';

interface CoordinatorOptions {
  port?: string;
  host?: string;
  db?: string;
  dataDir?: string;
  publicUrl?: string;
  audience?: string;
  logLevel?: string;
}

export function registerCoordinatorCommand(program: Command): void {
  program
    .command('coordinator')
    .description('run the consortium coordinator (REST API, OpenAPI at /api/docs, /health, /metrics)')
    .option('--port <n>', 'HTTP port; 0 = any free port (FEDSYNTH_PORT, default 8080)')
    .option('--host <address>', 'address to listen on (FEDSYNTH_HOST, default 0.0.0.0)')
    .option(
      '--db <url>',
      'sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE[?schema=NAME] (FEDSYNTH_DB, default ' +
        'sqlite:<data-dir>/coordinator.sqlite; prefer FEDSYNTH_DB for passwords, argv is visible to ps)',
    )
    .option(
      '--data-dir <dir>',
      'signing key and default database (FEDSYNTH_DATA_DIR, default .fedsynth/coordinator)',
    )
    .option(
      '--public-url <url>',
      'URL sites and users reach it at (FEDSYNTH_PUBLIC_URL, default http://<hostname>:<port>)',
    )
    .option(
      '--audience <aud>',
      'audience of site proofs and issuer of user tokens (FEDSYNTH_AUDIENCE, default ' +
        'fedsynth-coordinator:<public host>:<public port>)',
    )
    .option(
      '--log-level <level>',
      'fatal|error|warn|info|debug|trace|silent (FEDSYNTH_LOG_LEVEL, default info)',
    )
    .action(async (opts: CoordinatorOptions) => {
      // validate first (zod only), so a bad flag is reported before Nest and the drivers load
      const { ConfigError, resolveCoordinatorConfig } =
        await import('@fedsynth/coordinator/config/coordinator-config');
      let config;
      try {
        config = resolveCoordinatorConfig(opts, { env: process.env });
      } catch (error) {
        if (error instanceof ConfigError) throw new UsageError(error.message);
        throw error;
      }
      const { serveCoordinator } = await import('@fedsynth/coordinator');
      const running = await serveCoordinator(config);
      console.error(
        `fedsynth coordinator: listening on ${running.url} (public URL ${config.publicUrl}, audience ` +
          `${config.audience}); Ctrl-C stops it`,
      );
      const signal = await running.stopped;
      console.error(`fedsynth coordinator: stopped (${signal})`);
    });
}
