// The checkpoint store: atomic commits, pruning to the newest two, verification and fallback when loading.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import {
  CheckpointStore,
  NodeCheckpointFileSystem,
  type CheckpointContent,
  type CheckpointFileSystem,
} from './checkpoint.js';
import { removeTempDirs, tempCheckpointDir } from './testing/training-test-helpers.js';

after(removeTempDirs);

function content(step: number): CheckpointContent {
  return {
    step,
    steps: 10,
    seed: 3,
    kind: 'toy-conv',
    specHash: 'ab'.repeat(32),
    losses: Array.from({ length: step }, (_, i) => 1 / (i + 1)),
    elapsedMs: step * 100,
  };
}

const blob = (step: number, kind: number) => Buffer.alloc(64 + step, kind * 16 + step);

/** Fails the operation that matches `when`, once. */
class FaultyFileSystem extends NodeCheckpointFileSystem implements CheckpointFileSystem {
  constructor(private when: ((operation: string, file: string) => boolean) | undefined) {
    super();
  }

  private check(operation: string, file: string): void {
    if (this.when?.(operation, file)) {
      this.when = undefined;
      throw new Error(`injected ${operation} failure on ${path.basename(file)}`);
    }
  }

  override async writeFile(file: string, data: Uint8Array): Promise<void> {
    this.check('write', file);
    await super.writeFile(file, data);
  }

  override async rename(from: string, to: string): Promise<void> {
    this.check('rename', to);
    await super.rename(from, to);
  }
}

describe('checkpoint store', () => {
  it('saves, lists and loads a checkpoint, verified', async () => {
    const dir = tempCheckpointDir();
    const store = new CheckpointStore(dir, { now: () => new Date('2025-01-02T03:04:05Z') });
    const file = await store.save(content(4), blob(4, 1), blob(4, 2));
    assert.equal(file, path.join(dir, 'ckpt-000000004.json'));
    assert.deepEqual(await store.steps(), [4]);
    const loaded = await store.loadLatest();
    assert.ok(loaded);
    assert.equal(loaded.path, file);
    assert.deepEqual(loaded.weights, blob(4, 1));
    assert.deepEqual(loaded.optimizer, blob(4, 2));
    assert.equal(loaded.meta.createdAt, '2025-01-02T03:04:05.000Z');
    assert.deepEqual(loaded.meta.losses, content(4).losses);
    assert.equal(loaded.meta.weights.sha256.length, 64);
    assert.equal(await new CheckpointStore(tempCheckpointDir()).loadLatest(), undefined);
  });

  it('keeps the newest two', async () => {
    const dir = tempCheckpointDir();
    const store = new CheckpointStore(dir);
    for (const step of [1, 2, 3, 4]) await store.save(content(step), blob(step, 1), blob(step, 2));
    assert.deepEqual(await store.steps(), [3, 4]);
    assert.deepEqual(readdirSync(dir).sort(), [
      'ckpt-000000003.json',
      'ckpt-000000003.optimizer',
      'ckpt-000000003.weights',
      'ckpt-000000004.json',
      'ckpt-000000004.optimizer',
      'ckpt-000000004.weights',
    ]);
  });

  it('a save that dies before its JSON is renamed never happened; its leftovers are cleaned up later', async () => {
    const dir = tempCheckpointDir();
    const store = new CheckpointStore(dir, {
      fs: new FaultyFileSystem(
        (operation, file) => operation === 'rename' && file.endsWith('000000003.json'),
      ),
    });
    await store.save(content(2), blob(2, 1), blob(2, 2));
    await assert.rejects(store.save(content(3), blob(3, 1), blob(3, 2)), /injected rename failure/);
    assert.deepEqual(await store.steps(), [2]);
    assert.equal((await store.loadLatest())?.meta.step, 2);
    assert.ok(!readdirSync(dir).some((name) => name.includes('.tmp-')), 'temp file left behind');
    await store.save(content(4), blob(4, 1), blob(4, 2));
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.includes('000000003')),
      [],
    );
    assert.deepEqual(await store.steps(), [2, 4]);
  });

  it('falls back to the older checkpoint when the newest is damaged', async () => {
    const dir = tempCheckpointDir();
    const lines: string[] = [];
    const store = new CheckpointStore(dir, { logger: (line) => lines.push(line) });
    await store.save(content(5), blob(5, 1), blob(5, 2));
    await store.save(content(6), blob(6, 1), blob(6, 2));
    const weights = path.join(dir, 'ckpt-000000006.weights');
    const damaged = readFileSync(weights);
    damaged[10] ^= 0xff;
    writeFileSync(weights, damaged);
    assert.equal((await store.loadLatest())?.meta.step, 5);
    assert.match(lines.join('\n'), /checkpoint at step 6 skipped: .*sha256 differs/);

    writeFileSync(path.join(dir, 'ckpt-000000005.json'), '{"format": "something else"}');
    assert.equal(await store.loadLatest(), undefined);
    await assert.rejects(store.load(5), /not a fedsynth-checkpoint v1 file/);
  });

  it('removes stray temp files when it prunes', async () => {
    const dir = tempCheckpointDir();
    writeFileSync(path.join(dir, 'ckpt-000000001.weights.tmp-123-abcd'), 'partial');
    writeFileSync(path.join(dir, 'notes.txt'), 'not ours');
    await new CheckpointStore(dir).save(content(1), blob(1, 1), blob(1, 2));
    assert.deepEqual(readdirSync(dir).sort(), [
      'ckpt-000000001.json',
      'ckpt-000000001.optimizer',
      'ckpt-000000001.weights',
      'notes.txt',
    ]);
  });

  it('stores an optional EMA blob beside the others, verifies it on load and prunes it with its checkpoint', async () => {
    const dir = tempCheckpointDir();
    const store = new CheckpointStore(dir);
    for (const step of [1, 2, 3])
      await store.save(content(step), blob(step, 1), blob(step, 2), blob(step, 3));
    assert.deepEqual(
      readdirSync(dir)
        .filter((name) => name.endsWith('.ema'))
        .sort(),
      ['ckpt-000000002.ema', 'ckpt-000000003.ema'],
    );
    const loaded = await store.load(3);
    assert.deepEqual(loaded.ema, blob(3, 3));
    assert.equal(loaded.meta.ema!.bytes, blob(3, 3).byteLength);
    writeFileSync(path.join(dir, 'ckpt-000000003.ema'), 'damaged');
    const latest = await store.loadLatest();
    assert.equal(latest!.meta.step, 2, 'a damaged EMA blob fails its checkpoint');
    // Without an EMA nothing changes.
    await store.save(content(4), blob(4, 1), blob(4, 2));
    assert.equal((await store.load(4)).ema, undefined);
  });
});
