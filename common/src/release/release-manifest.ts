// The release's sha256 manifest: one `<hex>  <path>` line per file (`sha256sum -c` format), paths relative to the
// release folder with forward slashes, sorted so the manifest (and its own hash) is reproducible.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

export const MANIFEST_FILE = 'MANIFEST.sha256';

/** Every regular file under `dir`, relative, '/'-separated, sorted by code unit (locale-independent). */
export async function listReleaseFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    const entries = await readdir(path.join(dir, rel), { withFileTypes: true });
    for (const entry of entries) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(child);
      else if (entry.isFile()) out.push(child);
      else throw new Error(`release folder ${dir}: ${child} is neither a file nor a folder`);
    }
  }
  await walk('');
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** sha256 of a file, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file), hash);
  return hash.digest('hex');
}

/** The manifest text of `files` (relative paths under `dir`). */
export async function manifestOf(dir: string, files: readonly string[]): Promise<string> {
  const lines: string[] = [];
  for (const file of files) {
    if (/[\n\\]/.test(file)) throw new Error(`release file name ${JSON.stringify(file)} cannot be listed`);
    lines.push(`${await sha256File(path.join(dir, ...file.split('/')))}  ${file}`);
  }
  return lines.map((line) => `${line}\n`).join('');
}

/** Parses a manifest into path → sha256 (throws on a malformed line, naming it). */
export function parseManifest(text: string): Map<string, string> {
  const out = new Map<string, string>();
  text
    .split('\n')
    .filter((line) => line.length > 0)
    .forEach((line, i) => {
      const match = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
      if (!match) throw new Error(`${MANIFEST_FILE} line ${i + 1} is not "<sha256>  <path>"`);
      out.set(match[2]!, match[1]!);
    });
  return out;
}
