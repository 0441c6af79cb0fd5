// Runs the fedsynth CLI as a user does: a separate Node process, its exit code and both output streams.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '@fedsynth/common/testing/paths';

const exec = promisify(execFile);
export const FEDSYNTH_BIN = path.join(repoRoot(), 'site-agent', 'bin', 'fedsynth.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function fedsynth(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [FEDSYNTH_BIN, ...args], { maxBuffer: 32 << 20 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
