// The release's sha256 manifest: one `<hex>  <path>` line per file (`sha256sum -c` format), paths relative to the
// release folder with forward slashes, sorted so the manifest (and its own hash) is reproducible.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
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

/** A release folder that no longer matches its manifest (a file missing, changed, or the manifest itself). */
export class ReleaseIntegrityError extends Error {
  override readonly name = 'ReleaseIntegrityError';
}

/**
 * Checks a built release against its manifest before it is served: the manifest's own sha256 (when known), then
 * every listed file's sha256. Returns the files to serve: exactly the listed ones, sorted, then the manifest. Only
 * the manifest decides what is served; anything else in the folder is ignored. Throws ReleaseIntegrityError naming
 * the first problem.
 */
export async function verifyRelease(
  folder: string,
  expectedManifestSha256?: string,
): Promise<{ files: string[]; sha256: Map<string, string> }> {
  const manifestFile = path.join(folder, MANIFEST_FILE);
  const fail = (message: string) => new ReleaseIntegrityError(`release ${path.basename(folder)}: ${message}`);
  let bytes: Buffer;
  try {
    bytes = await readFile(manifestFile);
  } catch (error) {
    throw fail(`${MANIFEST_FILE} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const manifestSha256 = createHash('sha256').update(bytes).digest('hex');
  if (expectedManifestSha256 !== undefined) {
    if (manifestSha256 !== expectedManifestSha256)
      throw fail(`${MANIFEST_FILE} was changed since the release was built`);
  }
  let sha256: Map<string, string>;
  try {
    sha256 = parseManifest(bytes.toString('utf8'));
  } catch (error) {
    throw fail((error as Error).message);
  }
  const files = [...sha256.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const file of files) {
    const parts = file.split('/');
    if (file === MANIFEST_FILE || parts.some((p) => p === '' || p === '.' || p === '..')) {
      throw fail(`${MANIFEST_FILE} lists an invalid path ${JSON.stringify(file)}`);
    }
    let actual: string;
    try {
      actual = await sha256File(path.join(folder, ...parts));
    } catch (error) {
      throw fail(`${file} is missing or unreadable (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (actual !== sha256.get(file)) throw fail(`${file} does not match its sha256 in ${MANIFEST_FILE}`);
  }
  sha256.set(MANIFEST_FILE, manifestSha256);
  return { files: [...files, MANIFEST_FILE], sha256 };
}
