// 'echo-upload': a transport diagnostic. Fetches every input of the job (checking each arrives intact), writes a
// file of `bytes` pseudo-random bytes derived from `seed` (AES-256-CTR keystream, so anyone can recompute it), uploads
// it with the resumable sender, and reports progress all along. Used by the federation tests and to measure a
// site's link to the coordinator.
import { createCipheriv, createHash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';
import { JobError, type JobHandler } from '../job-handlers.js';

export const ECHO_UPLOAD_KIND = 'echo-upload';

export const echoUploadPayloadSchema = z.strictObject({
  /** size of the uploaded file */
  bytes: z
    .number()
    .int()
    .min(0)
    .max(64 * 2 ** 30),
  seed: z.string().max(128).default('echo'),
});
export type EchoUploadPayload = z.input<typeof echoUploadPayloadSchema>;

const BLOCK = 1024 * 1024;

/** The echo bytes for a seed, a block at a time. */
export function* echoBlocks(seed: string, size: number, blockBytes = BLOCK): Generator<Buffer> {
  const key = createHash('sha256').update(`fedsynth-echo:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(blockBytes);
  for (let done = 0; done < size;) {
    const n = Math.min(blockBytes, size - done);
    yield cipher.update(n === blockBytes ? zeros : zeros.subarray(0, n));
    done += n;
  }
}

/** sha256 of the echo bytes (what the coordinator must have stored). */
export function echoSha256(seed: string, size: number): string {
  const hash = createHash('sha256');
  for (const block of echoBlocks(seed, size)) hash.update(block);
  return hash.digest('hex');
}

export async function writeEchoFile(
  file: string,
  seed: string,
  size: number,
  onBlock?: (bytesWritten: number) => void,
): Promise<void> {
  const handle = await open(file, 'w', 0o600);
  try {
    let done = 0;
    for (const block of echoBlocks(seed, size)) {
      await handle.write(block, 0, block.length, done);
      done += block.length;
      onBlock?.(done);
    }
  } finally {
    await handle.close();
  }
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

export const echoUploadHandler: JobHandler = async (ctx) => {
  const parsed = echoUploadPayloadSchema.safeParse(ctx.job.payload);
  if (!parsed.success)
    throw new JobError('bad_payload', `echo-upload payload: ${parsed.error.message}`, false);
  const { bytes, seed } = parsed.data;

  const inputs: Array<{ role: string; sha256: string; size: number; verified: boolean }> = [];
  for (const input of ctx.job.inputs ?? []) {
    ctx.progress(0, { stage: 'download', message: input.role });
    const file = await ctx.download(input.sha256);
    const [sha256, st] = await Promise.all([sha256File(file), stat(file)]);
    inputs.push({ ...input, verified: sha256 === input.sha256 && st.size === input.size });
  }

  const file = path.join(ctx.workDir, 'echo.bin');
  await writeEchoFile(file, seed, bytes, (done) =>
    ctx.progress(bytes ? (0.2 * done) / bytes : 0.2, { stage: 'generate' }),
  );
  ctx.signal.throwIfAborted();
  const output = await ctx.upload(
    { file },
    {
      role: 'echo',
      kind: 'job-output',
      meta: { seed },
      onProgress: (p) =>
        ctx.progress(0.2 + (p.bytesTotal ? (0.8 * p.bytesDone) / p.bytesTotal : 0.8), {
          stage: 'upload',
          metrics: { bytesPerSecond: Math.round(p.bytesPerSecond) },
        }),
    },
  );
  ctx.progress(1, { stage: 'done' });
  return {
    outputs: [output],
    metrics: { bytes },
    summary: { seed, inputs },
  };
};
