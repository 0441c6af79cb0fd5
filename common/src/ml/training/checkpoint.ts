// Checkpoints of a training run in its checkpointDir: per step N three files
//   ckpt-00000000N.weights    the model (fedsynth-weights blob, architecture from the model)
//   ckpt-00000000N.optimizer  the optimizer state (fedsynth-weights blob, see encodeOptimizerState)
//   ckpt-00000000N.ema        optional: exponential moving averages of weights (G_ema), fedsynth-weights blob
//   ckpt-00000000N.json       step, seed, spec hash, losses so far, the blobs' sizes and sha256
// Every file is written to a temporary name, flushed and renamed; the JSON is renamed last, so it is the commit:
// a checkpoint without its JSON never existed. Only the newest `keep` (2) checkpoints are kept; loading falls back
// to the older one when the newest is damaged.
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';

export const CHECKPOINT_FORMAT = 'fedsynth-checkpoint';
export const CHECKPOINT_FORMAT_VERSION = 1;

/** The filesystem operations the store needs; injectable for fault-injection tests. */
export interface CheckpointFileSystem {
  mkdir(dir: string): Promise<void>;
  /** Writes and flushes (fsync) a file; it need not be atomic (the store renames). */
  writeFile(file: string, data: Uint8Array): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  readFile(file: string): Promise<Buffer>;
  /** File names in `dir`; an empty list when the directory does not exist. */
  readdir(dir: string): Promise<string[]>;
  /** Removes a file; no error when it is already gone. */
  remove(file: string): Promise<void>;
  /** Flushes a directory's entries (after renames); may be a no-op where unsupported. */
  syncDir(dir: string): Promise<void>;
}

export class NodeCheckpointFileSystem implements CheckpointFileSystem {
  async mkdir(dir: string): Promise<void> {
    await fsp.mkdir(dir, { recursive: true });
  }

  async writeFile(file: string, data: Uint8Array): Promise<void> {
    const handle = await fsp.open(file, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async rename(from: string, to: string): Promise<void> {
    await fsp.rename(from, to);
  }

  async readFile(file: string): Promise<Buffer> {
    return fsp.readFile(file);
  }

  async readdir(dir: string): Promise<string[]> {
    try {
      return await fsp.readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  }

  async remove(file: string): Promise<void> {
    await fsp.rm(file, { force: true });
  }

  async syncDir(dir: string): Promise<void> {
    let handle: fsp.FileHandle | undefined;
    try {
      handle = await fsp.open(dir, 'r');
      await handle.sync();
    } catch {
      // Directories cannot be opened or fsynced everywhere (Windows); the renames are still atomic.
    } finally {
      await handle?.close();
    }
  }
}

export interface CheckpointFileRef {
  file: string;
  bytes: number;
  sha256: string;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: typeof CHECKPOINT_FORMAT_VERSION;
  /** Optimizer steps completed: a resumed run starts at this step index. */
  step: number;
  steps: number;
  seed: number;
  kind: string;
  specHash: string;
  /** Mean loss of every completed step, index = step - 1. */
  losses: number[];
  /** Wall time of all sessions that led here. */
  elapsedMs: number;
  createdAt: string;
  weights: CheckpointFileRef;
  optimizer: CheckpointFileRef;
  /** Present when the run keeps an EMA of weights. */
  ema?: CheckpointFileRef;
}

export type CheckpointContent = Omit<
  CheckpointMeta,
  'format' | 'version' | 'createdAt' | 'weights' | 'optimizer' | 'ema'
>;

export interface LoadedCheckpoint {
  meta: CheckpointMeta;
  /** Path of the checkpoint's JSON. */
  path: string;
  weights: Buffer;
  optimizer: Buffer;
  ema?: Buffer;
}

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

const NAME = /^ckpt-(\d{9})\.(json|weights|optimizer|ema)$/;
const TEMP_MARK = '.tmp-';

function baseName(step: number): string {
  return `ckpt-${String(step).padStart(9, '0')}`;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface CheckpointStoreOptions {
  fs?: CheckpointFileSystem;
  /** Checkpoints to keep (default 2). */
  keep?: number;
  now?: () => Date;
  /** Told about damaged checkpoints skipped while loading. */
  logger?: (message: string) => void;
}

export class CheckpointStore {
  private readonly fs: CheckpointFileSystem;
  private readonly keep: number;
  private readonly now: () => Date;
  private readonly logger: (message: string) => void;

  constructor(
    readonly dir: string,
    options: CheckpointStoreOptions = {},
  ) {
    this.fs = options.fs ?? new NodeCheckpointFileSystem();
    this.keep = options.keep ?? 2;
    if (!Number.isSafeInteger(this.keep) || this.keep < 1)
      throw new Error('CheckpointStore: keep must be >= 1');
    this.now = options.now ?? (() => new Date());
    this.logger = options.logger ?? (() => undefined);
  }

  /** Path of the JSON of the checkpoint at `step`. */
  pathOf(step: number): string {
    return path.join(this.dir, `${baseName(step)}.json`);
  }

  /** Writes a checkpoint atomically, then prunes to the newest `keep`. Returns the JSON's path. */
  async save(
    content: CheckpointContent,
    weights: Uint8Array,
    optimizer: Uint8Array,
    ema?: Uint8Array,
  ): Promise<string> {
    if (!Number.isSafeInteger(content.step) || content.step < 0) {
      throw new CheckpointError(`checkpoint: bad step ${content.step}`);
    }
    await this.fs.mkdir(this.dir);
    const base = baseName(content.step);
    const meta: CheckpointMeta = {
      format: CHECKPOINT_FORMAT,
      version: CHECKPOINT_FORMAT_VERSION,
      ...content,
      createdAt: this.now().toISOString(),
      weights: { file: `${base}.weights`, bytes: weights.byteLength, sha256: sha256(weights) },
      optimizer: { file: `${base}.optimizer`, bytes: optimizer.byteLength, sha256: sha256(optimizer) },
      ...(ema && { ema: { file: `${base}.ema`, bytes: ema.byteLength, sha256: sha256(ema) } }),
    };
    await this.writeAtomic(meta.weights.file, weights);
    await this.writeAtomic(meta.optimizer.file, optimizer);
    if (ema && meta.ema) await this.writeAtomic(meta.ema.file, ema);
    await this.writeAtomic(`${base}.json`, Buffer.from(`${JSON.stringify(meta, null, 1)}\n`, 'utf8'));
    await this.fs.syncDir(this.dir);
    await this.prune();
    return this.pathOf(content.step);
  }

  private async writeAtomic(name: string, data: Uint8Array): Promise<void> {
    const target = path.join(this.dir, name);
    const temp = `${target}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      await this.fs.writeFile(temp, data);
      await this.fs.rename(temp, target);
    } catch (error) {
      await this.fs.remove(temp).catch(() => undefined);
      throw error;
    }
  }

  /** Steps of committed checkpoints (those with a JSON), ascending. */
  async steps(): Promise<number[]> {
    const names = await this.fs.readdir(this.dir);
    return names
      .map((name) => NAME.exec(name))
      .filter((match): match is RegExpExecArray => match !== null && match[2] === 'json')
      .map((match) => Number(match[1]))
      .sort((a, b) => a - b);
  }

  /** Keeps the newest `keep` checkpoints; removes older ones (JSON first), orphaned blobs and temp files. */
  async prune(): Promise<void> {
    const names = await this.fs.readdir(this.dir);
    const committed = await this.steps();
    const kept = new Set(committed.slice(-this.keep));
    const newest = committed.at(-1) ?? -1;
    const doomed = committed.filter((step) => !kept.has(step));
    for (const step of doomed) await this.fs.remove(this.pathOf(step));
    for (const name of names) {
      const match = NAME.exec(name);
      if (match && match[2] !== 'json') {
        const step = Number(match[1]);
        // Blobs of a pruned checkpoint, or left by a save that died before its commit (older than the newest).
        if (!kept.has(step) && step <= newest) await this.fs.remove(path.join(this.dir, name));
      } else if (name.includes(TEMP_MARK) && name.startsWith('ckpt-')) {
        await this.fs.remove(path.join(this.dir, name));
      }
    }
  }

  /** Reads and verifies one checkpoint; throws a CheckpointError saying what is wrong. */
  async load(step: number): Promise<LoadedCheckpoint> {
    const jsonPath = this.pathOf(step);
    let meta: CheckpointMeta;
    try {
      meta = JSON.parse((await this.fs.readFile(jsonPath)).toString('utf8')) as CheckpointMeta;
    } catch (error) {
      throw new CheckpointError(`${jsonPath}: unreadable (${(error as Error).message})`);
    }
    if (meta.format !== CHECKPOINT_FORMAT || meta.version !== CHECKPOINT_FORMAT_VERSION) {
      throw new CheckpointError(`${jsonPath}: not a ${CHECKPOINT_FORMAT} v${CHECKPOINT_FORMAT_VERSION} file`);
    }
    if (meta.step !== step || !Array.isArray(meta.losses) || typeof meta.specHash !== 'string') {
      throw new CheckpointError(`${jsonPath}: inconsistent metadata`);
    }
    const read = async (ref: CheckpointFileRef): Promise<Buffer> => {
      const file = path.join(this.dir, path.basename(ref.file));
      let data: Buffer;
      try {
        data = await this.fs.readFile(file);
      } catch (error) {
        throw new CheckpointError(`${file}: unreadable (${(error as Error).message})`);
      }
      if (data.byteLength !== ref.bytes || sha256(data) !== ref.sha256) {
        throw new CheckpointError(`${file}: size or sha256 differs from ${path.basename(jsonPath)}`);
      }
      return data;
    };
    return {
      meta,
      path: jsonPath,
      weights: await read(meta.weights),
      optimizer: await read(meta.optimizer),
      ...(meta.ema && { ema: await read(meta.ema) }),
    };
  }

  /** The newest checkpoint that verifies, or undefined when there is none; damaged ones are logged and skipped. */
  async loadLatest(): Promise<LoadedCheckpoint | undefined> {
    const steps = await this.steps();
    for (const step of steps.reverse()) {
      try {
        return await this.load(step);
      } catch (error) {
        if (!(error instanceof CheckpointError)) throw error;
        this.logger(`checkpoint at step ${step} skipped: ${error.message}`);
      }
    }
    return undefined;
  }
}
