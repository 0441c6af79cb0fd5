// `fedsynth site enroll` and `fedsynth site run`: the site agent. Loaded lazily, like the other commands' heavy parts.
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError, parseInteger } from '../cli-errors.js';
import { registerSiteReviewCommand } from './audit.command.js';

interface EnrollOptions {
  coordinator: string;
  siteId: string;
  token?: string;
  data: string;
  state: string;
  name?: string;
  json?: boolean;
}

interface RunOptions {
  state: string;
  concurrency: string;
  maxUploadRate?: string;
  chunkSize?: string;
  logLevel: string;
  transports: string;
}

const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;

export function registerSiteCommand(program: Command): void {
  const site = program
    .command('site')
    .description('the site agent: enrol this site with a coordinator once, then run the agent');

  site
    .command('enroll')
    .description(
      'create the site key, register it with the coordinator (one-time token), save the site state',
    )
    .requiredOption(
      '--coordinator <url>',
      'the coordinator URL you were given, e.g. https://coordinator.example.org',
    )
    .requiredOption('--site-id <id>', 'the site id the coordinator administrator created')
    .option(
      '--token <token>',
      'the one-time enrolment token (or FEDSYNTH_ENROLLMENT_TOKEN; argv is visible to ps)',
    )
    .requiredOption(
      '--data <dir>',
      "the site's private data folder (BraTS cases or slice stores; never leaves the site)",
    )
    .requiredOption('--state <dir>', 'where the agent keeps its key (0600), site.json and jobs in flight')
    .option('--name <name>', "the site name you expect (checked against the coordinator's)")
    .option('--json', 'print the saved state as JSON')
    .action(async (opts: EnrollOptions) => {
      const token = opts.token ?? process.env.FEDSYNTH_ENROLLMENT_TOKEN;
      if (!token) throw new UsageError('give the enrolment token with --token or FEDSYNTH_ENROLLMENT_TOKEN');
      const { enrollSite, normalizeCoordinatorUrl } = await import('../../agent/enroll.js');
      const { SiteStateError } = await import('../../agent/site-state.js');
      try {
        normalizeCoordinatorUrl(opts.coordinator);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      let state;
      try {
        state = await enrollSite({
          coordinatorUrl: opts.coordinator,
          siteId: opts.siteId,
          token,
          dataDir: opts.data,
          stateDir: opts.state,
          name: opts.name,
        });
      } catch (error) {
        if (error instanceof SiteStateError) throw new UsageError(error.message);
        throw error; // refused, unreachable: exit 1
      }
      if (opts.json) console.log(JSON.stringify(state, null, 2));
      else {
        console.log(
          `enrolled site ${state.siteName} (${state.siteId}) at ${state.coordinatorUrl} with key ${state.kid}; ` +
            `state in ${path.resolve(opts.state)}`,
        );
      }
    });

  site
    .command('run')
    .description(
      'run the site agent: connect, say hello, run offered jobs; Ctrl-C stops it (jobs resume next run)',
    )
    .requiredOption('--state <dir>', 'the state directory of `fedsynth site enroll`')
    .option('--concurrency <n>', 'jobs run at once', '1')
    .option('--max-upload-rate <rate>', 'upload limit per second, e.g. 5MB or 512KiB (default: none)')
    .option('--chunk-size <bytes>', 'upload chunk size (4096 … 1048576; default 1 MiB - 64 KiB)')
    .option('--log-level <level>', LOG_LEVELS.join('|'), 'info')
    .option('--transports <list>', 'socket transports to try: websocket, polling', 'websocket')
    .action(async (opts: RunOptions) => {
      const concurrency = parseInteger('--concurrency', opts.concurrency, 1);
      const chunkSize = opts.chunkSize ? parseInteger('--chunk-size', opts.chunkSize, 4096) : undefined;
      if (chunkSize !== undefined && chunkSize > 1024 * 1024)
        throw new UsageError('--chunk-size is at most 1048576');
      if (!(LOG_LEVELS as readonly string[]).includes(opts.logLevel)) {
        throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
      }
      const transports = opts.transports.split(',').map((t) => t.trim());
      if (!transports.every((t) => t === 'websocket' || t === 'polling')) {
        throw new UsageError('--transports is a comma-separated list of websocket, polling');
      }
      const agentModule = await import('../../agent/index.js');
      const {
        AgentFatalError,
        SiteAgent,
        SiteStateError,
        describeSite,
        lockStateDir,
        parseByteRate,
        readSiteState,
      } = agentModule;
      let bytesPerSecond: number | undefined;
      try {
        bytesPerSecond = opts.maxUploadRate ? parseByteRate(opts.maxUploadRate) : undefined;
      } catch (error) {
        throw new UsageError(`--max-upload-rate: ${(error as Error).message}`);
      }
      const { loadSiteKey } = await import('@fedsynth/common/identity/index');
      const stateDir = path.resolve(opts.state);
      let state;
      let release: () => Promise<void>;
      try {
        state = await readSiteState(stateDir);
        release = await lockStateDir(stateDir);
      } catch (error) {
        if (error instanceof SiteStateError) throw new UsageError(error.message);
        throw error;
      }
      const log = agentModule.streamLogger(opts.logLevel as (typeof LOG_LEVELS)[number]);
      try {
        const key = await loadSiteKey(stateDir);
        if (key.kid !== state.kid)
          throw new UsageError(`the key in ${stateDir} is not the one this site enrolled`);
        const agent = new SiteAgent({
          stateDir,
          site: state,
          key,
          describe: () => describeSite(state.dataDir, log),
          concurrency,
          logger: log,
          transports: transports as Array<'websocket' | 'polling'>,
          upload: { chunkSize, bytesPerSecond },
        });
        let signals = 0;
        const onSignal = (signal: NodeJS.Signals) => {
          if (++signals > 1) process.exit(130); // a second Ctrl-C: do not wait
          void agent.stop(signal);
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        try {
          await agent.start();
          await agent.done;
        } catch (error) {
          if (error instanceof AgentFatalError) {
            console.error(`fedsynth site run: ${error.message}`);
            process.exitCode = 3;
            return;
          }
          throw error;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
      } finally {
        await release();
      }
    });

  registerSiteReviewCommand(site);
}
