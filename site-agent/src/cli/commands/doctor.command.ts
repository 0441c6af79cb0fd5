// `fedsynth doctor`: which tfjs backend this machine gets, why the faster ones were skipped, and whether
// training here is usable — the first thing to run on a new site.
import type { Command } from 'commander';
import os from 'node:os';
import { describeBackend, parseBackendPreference, selectBackend } from '@fedsynth/common/ml/backend/index';

interface DoctorOptions {
  backend?: string;
  json?: boolean;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'report the ML backend (node-gpu → node → wasm), its device and versions, and whether training is usable',
    )
    .option('--backend <name>', 'check a specific backend: auto | tensorflow-gpu | tensorflow | wasm | cpu')
    .option('--json', 'print JSON')
    .action(async (opts: DoctorOptions) => {
      const prefer = opts.backend ? parseBackendPreference(opts.backend, '--backend') : 'auto';
      const choice = await selectBackend({ prefer, logger: () => undefined });
      const description = await describeBackend({ choice });
      const machine = {
        node: process.version,
        platform: `${os.platform()} ${os.arch()}`,
        cores: os.availableParallelism(),
        memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
      };
      if (opts.json) {
        console.log(JSON.stringify({ machine, tried: choice.tried, ...description }, null, 2));
        return;
      }
      console.log(
        `machine    ${machine.platform}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}`,
      );
      for (const attempt of choice.tried) {
        console.log(
          `${attempt.ok ? 'chosen ' : 'skipped'}    ${attempt.candidate.padEnd(15)} ${attempt.reason}`,
        );
      }
      console.log(`backend    ${description.backend} (${description.device})`);
      console.log(
        `versions   ${Object.entries(description.versions)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}`,
      );
      if (description.wasm) {
        console.log(
          `wasm       simd ${description.wasm.simd}, threads ${description.wasm.multithread}, training kernels: ${description.wasm.trainingKernels.join(', ')}`,
        );
      }
      console.log(`verdict    ${description.verdict}`);
      if (!description.trainingUsable) process.exitCode = 4;
    });
}
