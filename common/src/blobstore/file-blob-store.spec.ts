import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BlobIntegrityError, BlobNotFoundError, type BlobStore } from './blob-store.js';
import { FileBlobStore } from './file-blob-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-blob-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('putStream stores at root/ab/cd/<sha256>, read back byte for byte, immutable mode', async (t) => {
  const root = await tempDir(t);
  const store: BlobStore = new FileBlobStore(root);
  const data = randomBytes(300_000);
  const ref = await store.putStream(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
  assert.deepEqual(ref, { sha256: sha(data), size: data.length });
  const file = path.join(root, ref.sha256.slice(0, 2), ref.sha256.slice(2, 4), ref.sha256);
  assert.deepEqual(await readFile(file), data);
  assert.equal((await stat(file)).mode & 0o777, 0o444);
  assert.equal(await store.has(ref.sha256), true);
  assert.deepEqual(await store.stat(ref.sha256), ref);
  assert.deepEqual(await readAll(await store.createReadStream(ref.sha256)), data);
  assert.deepEqual(
    await readAll(await store.createReadStream(ref.sha256, { offset: 299_990, length: 100 })),
    data.subarray(299_990),
  );
  assert.equal((await readAll(await store.createReadStream(ref.sha256, { offset: 5, length: 0 }))).length, 0);
  assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
});

test('identical content is stored once; empty content is a blob too', async (t) => {
  const root = await tempDir(t);
  const store = new FileBlobStore(root);
  const data = randomBytes(1000);
  const a = await store.putStream(Readable.from([data]));
  const src = path.join(root, 'src.bin');
  await writeFile(src, data);
  const b = await store.putFile(src);
  assert.deepEqual(a, b);
  const all = [];
  for await (const ref of store.list()) all.push(ref);
  assert.deepEqual(all, [a]);
  assert.deepEqual(await readFile(src), data); // putFile without move leaves the source alone
  const empty = await store.putStream(Readable.from([]));
  assert.deepEqual(empty, { sha256: sha(Buffer.alloc(0)), size: 0 });
});

test('an expected hash or size that does not match stores nothing', async (t) => {
  const root = await tempDir(t);
  const store = new FileBlobStore(root);
  const data = randomBytes(5000);
  await assert.rejects(
    store.putStream(Readable.from([data]), { expectedSha256: sha(Buffer.from('other')) }),
    (e) => {
      assert.ok(e instanceof BlobIntegrityError);
      assert.equal(e.code, 'sha_mismatch');
      assert.match(e.message, new RegExp(sha(data)));
      return true;
    },
  );
  await assert.rejects(store.putStream(Readable.from([data]), { expectedSize: 4999 }), {
    code: 'size_mismatch',
  });
  const src = path.join(root, 'src.bin');
  await writeFile(src, data);
  await assert.rejects(store.putFile(src, { move: true, expectedSha256: 'f'.repeat(64) }), {
    code: 'sha_mismatch',
  });
  assert.deepEqual(await readFile(src), data); // a refused move leaves the file where it was
  const all = [];
  for await (const ref of store.list()) all.push(ref);
  assert.equal(all.length, 0);
  assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
});

test('putFile with move renames the file into place', async (t) => {
  const root = await tempDir(t);
  const store = new FileBlobStore(root);
  const data = randomBytes(70_000);
  const src = path.join(root, 'upload.part');
  await writeFile(src, data);
  const ref = await store.putFile(src, { move: true, expectedSha256: sha(data) });
  assert.equal(ref.sha256, sha(data));
  await assert.rejects(stat(src), { code: 'ENOENT' });
  assert.equal(await store.verify(ref.sha256), true);
  // moving identical content again: deduplicated, source removed
  await writeFile(src, data);
  assert.deepEqual(await store.putFile(src, { move: true }), ref);
  await assert.rejects(stat(src), { code: 'ENOENT' });
});

test('delete, missing blobs, and addresses that are not sha256 hex', async (t) => {
  const root = await tempDir(t);
  const store = new FileBlobStore(root);
  const ref = await store.putStream(Readable.from([Buffer.from('hello')]));
  assert.equal(await store.delete(ref.sha256), true);
  assert.equal(await store.delete(ref.sha256), false);
  assert.equal(await store.stat(ref.sha256), undefined);
  await assert.rejects(store.createReadStream(ref.sha256), BlobNotFoundError);
  for (const bad of ['../../etc/passwd', 'A'.repeat(64), 'ab', '']) {
    await assert.rejects(store.has(bad), TypeError);
  }
});

test('sweepTemp removes only stale temp files', async (t) => {
  const root = await tempDir(t);
  const store = new FileBlobStore(root);
  await store.putStream(Readable.from([Buffer.from('x')]));
  await writeFile(path.join(root, '.tmp', 'crashed.partial'), 'half');
  assert.equal(await store.sweepTemp(60_000), 0);
  assert.equal(await store.sweepTemp(60_000, Date.now() + 120_000), 1);
  assert.deepEqual(await readdir(path.join(root, '.tmp')), []);
});
