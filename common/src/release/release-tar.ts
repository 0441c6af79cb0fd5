// A release folder as a tar stream (ustar via tar-stream): files are added one at a time and each is streamed from
// disk with back-pressure, so memory stays flat whatever the release's size.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { listReleaseFiles, ReleaseIntegrityError } from './release-manifest.js';

export interface ReleaseTarOptions {
  /** folder name inside the archive (e.g. fedsynth-release-v3); files land under it */
  prefix: string;
  /** mtime of every entry (default: each file's own); a fixed one makes the archive reproducible */
  mtime?: Date;
  /** the files to pack, relative to the folder (default: every file, sorted) */
  files?: readonly string[];
  /**
   * sha256 per file (e.g. from verifyRelease): each file is hashed while it is sent and a mismatch (a file changed
   * after the check) destroys the stream with a ReleaseIntegrityError before the archive is complete.
   */
  sha256?: ReadonlyMap<string, string>;
}

/** A Node Readable of the tar archive; errors (a file vanished, a size changed) destroy it. */
export function releaseTarStream(folder: string, options: ReleaseTarOptions): Readable {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(options.prefix)) {
    throw new RangeError(`tar prefix must be 1–100 characters of A-Z a-z 0-9 . _ -, got ${options.prefix}`);
  }
  const pack = tar.pack();
  const fill = async (): Promise<void> => {
    const files = options.files ?? (await listReleaseFiles(folder));
    pack.entry({ name: `${options.prefix}/`, type: 'directory', mode: 0o755, mtime: options.mtime });
    const dirs = new Set<string>();
    for (const rel of files) {
      // directory entries first, so every extractor recreates empty-free folders with sane modes
      const parts = rel.split('/');
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (dirs.has(dir)) continue;
        dirs.add(dir);
        pack.entry({
          name: `${options.prefix}/${dir}/`,
          type: 'directory',
          mode: 0o755,
          mtime: options.mtime,
        });
      }
      const file = path.join(folder, ...parts);
      const st = await stat(file);
      const entry = pack.entry({
        name: `${options.prefix}/${rel}`,
        type: 'file',
        size: st.size,
        mode: 0o444,
        mtime: options.mtime ?? st.mtime,
      });
      const expected = options.sha256?.get(rel);
      if (options.sha256 && !expected)
        throw new ReleaseIntegrityError(`${rel} has no sha256 to check against`);
      if (!expected) {
        await pipeline(createReadStream(file), entry);
        continue;
      }
      const hash = createHash('sha256');
      const check = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          hash.update(chunk);
          done(null, chunk);
        },
        flush(done) {
          const actual = hash.digest('hex');
          done(
            actual === expected
              ? null
              : new ReleaseIntegrityError(`${rel} changed: its sha256 no longer matches the manifest`),
          );
        },
      });
      await pipeline(createReadStream(file), check, entry);
    }
    pack.finalize();
  };
  fill().catch((error: unknown) => pack.destroy(error as Error));
  // tar-stream's streams are streamx streams; expose a plain Node Readable
  return Readable.from(pack);
}
