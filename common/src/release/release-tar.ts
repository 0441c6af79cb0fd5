// A release folder as a tar stream (ustar via tar-stream): files are added one at a time and each is streamed from
// disk with back-pressure, so memory stays flat whatever the release's size.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { listReleaseFiles } from './release-manifest.js';

export interface ReleaseTarOptions {
  /** folder name inside the archive (e.g. fedsynth-release-v3); files land under it */
  prefix: string;
  /** mtime of every entry (default: each file's own); a fixed one makes the archive reproducible */
  mtime?: Date;
  /** the files to pack, relative to the folder (default: every file, sorted) */
  files?: readonly string[];
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
      await pipeline(createReadStream(file), entry);
    }
    pack.finalize();
  };
  fill().catch((error: unknown) => pack.destroy(error as Error));
  // tar-stream's streams are streamx streams; expose a plain Node Readable
  return Readable.from(pack);
}
