// Stand-alone entry point: `node coordinator/dist/main.js`, configured by FEDSYNTH_* environment variables only
// (see config/coordinator-config.ts and the README). The `fedsynth coordinator` command is the same with flags.
import { ConfigError } from './config/coordinator-config.js';
import { serveCoordinator } from './serve.js';

try {
  const running = await serveCoordinator({}, { env: process.env });
  await running.stopped;
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`fedsynth coordinator: ${error.message}`);
    process.exitCode = 2;
  } else {
    console.error(`fedsynth coordinator: failed to start: ${(error as Error).message ?? String(error)}`);
    if (process.env.FEDSYNTH_DEBUG) console.error(error);
    process.exitCode = 1;
  }
}
