import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { JobError, type JobContext, type UploadSource } from '../job-handlers.js';
import { silentLogger } from '../logger.js';
import { echoBlocks, echoSha256, echoUploadHandler } from './echo-upload.js';

test('echo bytes are a deterministic function of seed and size', () => {
  const a = Buffer.concat([...echoBlocks('s', 3000, 1024)]);
  const b = Buffer.concat([...echoBlocks('s', 3000)]);
  assert.equal(a.length, 3000);
  assert.deepEqual(a, b, 'block size does not change the bytes');
  assert.notDeepEqual(a, Buffer.concat([...echoBlocks('t', 3000)]));
  assert.deepEqual(
    Buffer.concat([...echoBlocks('s', 1000)]),
    a.subarray(0, 1000),
    'a prefix of a longer run',
  );
  assert.equal(echoSha256('s', 3000), createHash('sha256').update(a).digest('hex'));
  assert.equal(echoSha256('s', 0), createHash('sha256').digest('hex'));
});

test('the handler writes the file, uploads it as job-output with progress, and reports it', async (t) => {
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'fedsynth-echo-'));
  t.after(() => rm(workDir, { recursive: true, force: true }));
  const progress: Array<[number, string | undefined]> = [];
  const uploads: Array<{ data: Buffer; role: string; kind?: string }> = [];
  const ctx = (payload: Record<string, unknown>): JobContext => ({
    job: { id: 'job-1', kind: 'echo-upload', attempt: 1, leaseExpiresAt: 0, payload: payload as never },
    signal: new AbortController().signal,
    workDir,
    log: silentLogger,
    progress: (f, d) => progress.push([f, d?.stage]),
    upload: async (source: UploadSource, options) => {
      const data = 'file' in source ? await readFile(source.file) : source.buffer;
      uploads.push({ data, role: options.role, kind: options.kind });
      options.onProgress?.({
        transferId: 't',
        direction: 'send',
        bytesDone: data.length,
        bytesTotal: data.length,
        chunksDone: 1,
        chunksTotal: 1,
        resumedFromBytes: 0,
        bytesPerSecond: 1,
        elapsedMs: 1,
      });
      return {
        role: options.role,
        sha256: createHash('sha256').update(data).digest('hex'),
        size: data.length,
      };
    },
    download: async () => assert.fail('no inputs'),
  });
  const outcome = await echoUploadHandler(ctx({ bytes: 2_500_000, seed: 'x' }));
  assert.deepEqual(outcome.outputs, [{ role: 'echo', sha256: echoSha256('x', 2_500_000), size: 2_500_000 }]);
  assert.deepEqual(outcome.metrics, { bytes: 2_500_000 });
  assert.equal(uploads[0]!.kind, 'job-output');
  assert.deepEqual(progress[progress.length - 1], [1, 'done']);
  assert.ok(
    progress.some(([, stage]) => stage === 'generate') && progress.some(([, stage]) => stage === 'upload'),
  );
  const fractions = progress.map(([f]) => f);
  assert.deepEqual(
    fractions,
    [...fractions].sort((x, y) => x - y),
    'progress only grows',
  );
  await assert.rejects(
    echoUploadHandler(ctx({ bytes: -1 })),
    (e: unknown) => e instanceof JobError && !e.retryable,
  );
  await assert.rejects(echoUploadHandler(ctx({ bytes: 1, extra: true })), JobError);
});
