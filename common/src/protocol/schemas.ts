// zod schemas for every payload and every ack on the site <-> coordinator socket. Payloads are strict objects: an
// unknown key is refused, so nothing (a case id, a file name) rides along unnoticed. Replies are parsed leniently
// (unknown keys dropped) so a newer peer may add fields to an ack without breaking an older one.
import * as z from 'zod';
import { MAX_CHUNK_BYTES, MAX_TRANSFER_BYTES, MIN_CHUNK_BYTES } from './limits.js';

// ---------------------------------------------------------------------------------------------- primitives

/** site, job, study and round ids */
export const idSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/, 'expected an id of letters, digits and . _ : - (max 128)');
/** transfer ids become file names on the receiver: a restricted alphabet, 8 to 64 characters */
export const transferIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{8,64}$/, 'expected 8-64 characters of letters, digits, _ and -');
export const sha256HexSchema = z.string().regex(/^[0-9a-f]{64}$/, 'expected a lowercase hex sha256');
export const epochMsSchema = z.number().int().nonnegative();
const count = z.number().int().nonnegative();
const text = (max: number) => z.string().max(max);

/** Binary bytes as socket.io delivers them (Buffer in Node, ArrayBuffer/Uint8Array elsewhere), as a Buffer. */
export const bytesSchema = z
  .custom<Buffer>((v) => v instanceof Uint8Array || v instanceof ArrayBuffer, {
    message: 'expected binary bytes',
  })
  .transform((input): Buffer => {
    const v: unknown = input;
    if (Buffer.isBuffer(v)) return v;
    if (v instanceof ArrayBuffer) return Buffer.from(v);
    const u8 = v as Uint8Array;
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  });

const boundedRecord = <V extends z.ZodType>(value: V, maxKeys: number) =>
  z.record(z.string().max(64), value).refine((o) => Object.keys(o).length <= maxKeys, {
    message: `at most ${maxKeys} keys`,
  });

const metricsSchema = boundedRecord(z.number().refine(Number.isFinite, 'expected a finite number'), 256);

export const blobRefSchema = z.strictObject({ sha256: sha256HexSchema, size: count });

// ---------------------------------------------------------------------------------------------- replies

export const errorReplySchema = z.object({
  ok: z.literal(false),
  code: z.string().max(64),
  message: z.string().max(4000),
  retryable: z.boolean().optional(),
});

/** `{ ok: true, ...shape } | { ok: false, code, message }` */
export function replySchema<S extends z.ZodRawShape>(shape: S) {
  return z.discriminatedUnion('ok', [z.object({ ok: z.literal(true), ...shape }), errorReplySchema]);
}

// ---------------------------------------------------------------------------------------------- session

export const backendSchema = z.enum(['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu', 'onnxruntime-node']);

export const jobKindSchema = z.enum([
  'train-generator',
  'sample',
  'train-round',
  'evaluate',
  'audit',
  /** diagnostic: the site uploads N bytes derived from the payload (transport checks, throughput, tests) */
  'echo-upload',
]);
export type JobKind = z.output<typeof jobKindSchema>;

/** Counts only: never case or subject ids, paths or any per-case detail. */
export const datasetSummarySchema = z.strictObject({
  cases: count,
  trainCases: count,
  testCases: count,
  slices: count,
  trainSlices: count,
  testSlices: count,
  preset: text(32).optional(),
});

/** How far the site got with a job it holds: its own view, for the coordinator's logs and reconciliation. */
export const inFlightJobStateSchema = z.enum(['assigned', 'running', 'uploading', 'done', 'failed']);
export const inFlightJobSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  state: inFlightJobStateSchema,
});
export type InFlightJob = z.output<typeof inFlightJobSchema>;

/**
 * The coordinator's answer about one reported in-flight job: 'resume' (the attempt still holds its lease, renewed
 * to leaseExpiresAt: keep going, re-send a result not yet acknowledged), 'done' (the result was recorded: forget
 * the job), 'abandon' (the attempt is void: stop and forget it).
 */
export const jobResumeActionSchema = z.enum(['resume', 'done', 'abandon']);
export const jobResumeSchema = z.object({
  jobId: idSchema,
  attempt: z.number().int(),
  action: jobResumeActionSchema,
  leaseExpiresAt: epochMsSchema.optional(),
});
export type JobResume = z.output<typeof jobResumeSchema>;

export const siteHelloSchema = z.strictObject({
  protocolVersion: z.number().int().positive(),
  agentVersion: z.string().min(1).max(64),
  capabilities: z.strictObject({
    backends: z.array(backendSchema).max(8),
    cores: z.number().int().min(1).max(4096),
    memoryMb: count.optional(),
    gpus: z
      .array(z.strictObject({ name: text(128), memoryMb: count.optional() }))
      .max(16)
      .optional(),
    jobKinds: z.array(jobKindSchema).max(16),
  }),
  dataset: datasetSummarySchema,
  /**
   * Jobs this site holds from an earlier connection (a reconnect, or a restarted agent), so that the coordinator
   * lets it resume them instead of starting over. The ack's `jobs` says, per job, what to do.
   */
  inFlight: z.array(inFlightJobSchema).max(64).optional(),
});
export type SiteHello = z.output<typeof siteHelloSchema>;

export const helloReplySchema = replySchema({
  protocolVersion: z.number().int(),
  siteId: idSchema,
  serverTime: epochMsSchema,
  heartbeatIntervalMs: z.number().int().positive(),
  /** one entry per job of the hello's `inFlight` (absent when it had none) */
  jobs: z.array(jobResumeSchema).max(64).optional(),
});
export type HelloAccepted = {
  protocolVersion: number;
  siteId: string;
  serverTime: number;
  heartbeatIntervalMs: number;
  jobs?: JobResume[];
};

export const jobRefSchema = z.strictObject({ jobId: idSchema, attempt: z.number().int().min(1) });

export const heartbeatSchema = z.strictObject({
  seq: count,
  sentAt: epochMsSchema,
  activeJobs: z.array(jobRefSchema).max(64),
  load: z.strictObject({ cpu: z.number().min(0).max(1), rssMb: count }).optional(),
});
export type Heartbeat = z.output<typeof heartbeatSchema>;
export const heartbeatReplySchema = replySchema({
  serverTime: epochMsSchema,
  /** ids of `activeJobs` whose attempt no longer holds a lease: stop working on them */
  leaseLost: z.array(idSchema).max(64).optional(),
});
export type HeartbeatAck = { serverTime: number; leaseLost?: string[] };

// ---------------------------------------------------------------------------------------------- jobs

export const jobInputSchema = z.strictObject({ role: text(64), sha256: sha256HexSchema, size: count });
export type JobInput = z.output<typeof jobInputSchema>;

export const jobSchema = z.strictObject({
  id: idSchema,
  kind: jobKindSchema,
  /** fencing token: every message about the job names its attempt; a stale attempt gets 'lease_lost' */
  attempt: z.number().int().min(1),
  leaseExpiresAt: epochMsSchema,
  studyId: idSchema.optional(),
  roundId: idSchema.optional(),
  /** kind-specific parameters (validated by the job's handler) */
  payload: boundedRecord(z.json(), 128),
  /** blobs the site may fetch from the coordinator for this job (`blob:fetch`), by content address */
  inputs: z.array(jobInputSchema).max(1000).optional(),
});
export type Job = z.output<typeof jobSchema>;

export const jobOfferSchema = z.strictObject({ job: jobSchema });
export type JobOffer = z.output<typeof jobOfferSchema>;
/** ok: the offer was received (the site claims it with job:accept); an error reply declines it */
export const jobOfferReplySchema = replySchema({});

export const jobAcceptSchema = jobRefSchema;
export type JobAccept = z.output<typeof jobAcceptSchema>;
export const leaseReplySchema = replySchema({
  jobId: idSchema,
  attempt: z.number().int(),
  leaseExpiresAt: epochMsSchema,
});
export type LeaseGranted = { jobId: string; attempt: number; leaseExpiresAt: number };

export const jobProgressSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  fraction: z.number().min(0).max(1),
  stage: text(64).optional(),
  message: text(500).optional(),
  metrics: metricsSchema.optional(),
});
export type JobProgress = z.output<typeof jobProgressSchema>;

export const jobOutputSchema = z.strictObject({ role: text(64), sha256: sha256HexSchema, size: count });
export const jobResultSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  metrics: metricsSchema.optional(),
  /** blobs the site uploaded with transfers before reporting the result, by content address */
  outputs: z.array(jobOutputSchema).max(1000),
  summary: boundedRecord(z.json(), 128).optional(),
});
export type JobResult = z.output<typeof jobResultSchema>;

export const jobFailedSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  code: text(64),
  message: text(2000),
  retryable: z.boolean(),
});
export type JobFailed = z.output<typeof jobFailedSchema>;

export const jobCancelSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  reason: text(500),
});
export type JobCancel = z.output<typeof jobCancelSchema>;

export const emptyReplySchema = replySchema({});

// ---------------------------------------------------------------------------------------------- transfers

export const transferKindSchema = z.enum([
  // site -> coordinator
  'samples',
  'generator-weights',
  'round-update',
  // coordinator -> site
  'global-weights',
  'segmenter',
  'audit-pool',
  // the synthetic pool a segmenter study's sites mix into their training data
  'synthetic-pool',
  // site -> coordinator: any other output of a job (diagnostic jobs such as echo-upload)
  'job-output',
]);
export type TransferKind = z.output<typeof transferKindSchema>;

export const transferMetaSchema = boundedRecord(z.union([text(1024), z.number(), z.boolean(), z.null()]), 32);

export const transferBeginSchema = z.strictObject({
  transferId: transferIdSchema,
  kind: transferKindSchema,
  size: z.number().int().nonnegative().max(MAX_TRANSFER_BYTES),
  sha256: sha256HexSchema,
  chunkSize: z.number().int().min(MIN_CHUNK_BYTES).max(MAX_CHUNK_BYTES),
  meta: transferMetaSchema,
});
export type TransferBegin = z.output<typeof transferBeginSchema>;

export const transferChunkSchema = z.strictObject({
  transferId: transferIdSchema,
  index: z.number().int().nonnegative(),
  bytes: bytesSchema.refine(
    (b) => b.byteLength <= MAX_CHUNK_BYTES,
    `a chunk holds at most ${MAX_CHUNK_BYTES} bytes`,
  ),
  /** of this chunk's bytes; when present the receiver checks it and refuses a mismatch (retryable) */
  sha256: sha256HexSchema.optional(),
});
export type TransferChunk = z.output<typeof transferChunkSchema>;
export const chunkReplySchema = replySchema({ index: count, duplicate: z.boolean() });
export type ChunkAck = { index: number; duplicate: boolean };

export const transferRefSchema = z.strictObject({ transferId: transferIdSchema });
export type TransferRef = z.output<typeof transferRefSchema>;

export const transferAbortSchema = z.strictObject({
  transferId: transferIdSchema,
  reason: text(500).optional(),
});
export type TransferAbort = z.output<typeof transferAbortSchema>;

export const transferStateSchema = z.enum(['unknown', 'receiving', 'committed']);
/** half-open [start, end) runs of chunk indices */
export const chunkRangesSchema = z.array(z.tuple([count, count])).max(100_000);

export const transferStatusShape = {
  transferId: transferIdSchema,
  state: transferStateSchema,
  /** present unless state is 'unknown' */
  size: count.optional(),
  sha256: sha256HexSchema.optional(),
  chunkSize: count.optional(),
  /** chunk indices the receiver holds (all of them once committed) */
  received: chunkRangesSchema,
  receivedBytes: count,
  /** present once committed */
  blob: blobRefSchema.optional(),
};
export const transferStatusReplySchema = replySchema(transferStatusShape);
export type TransferStatus = {
  transferId: string;
  state: 'unknown' | 'receiving' | 'committed';
  size?: number;
  sha256?: string;
  chunkSize?: number;
  received: Array<[number, number]>;
  receivedBytes: number;
  blob?: { sha256: string; size: number };
};

export const commitReplySchema = replySchema({ transferId: transferIdSchema, blob: blobRefSchema });
export type CommitAck = { transferId: string; blob: { sha256: string; size: number } };

// ---------------------------------------------------------------------------------------------- downloads

/**
 * A site asks for one of its job's inputs. The coordinator sends it as a transfer to the site (transfer id in the
 * ack; the site's receiver answers the transfer events) and acks once the site has committed it. Asking again after
 * a reconnect resumes the same transfer.
 */
export const blobFetchSchema = z.strictObject({
  jobId: idSchema,
  attempt: z.number().int().min(1),
  sha256: sha256HexSchema,
});
export type BlobFetch = z.output<typeof blobFetchSchema>;
export const blobFetchReplySchema = replySchema({ transferId: transferIdSchema, blob: blobRefSchema });
export type BlobFetched = { transferId: string; blob: { sha256: string; size: number } };
