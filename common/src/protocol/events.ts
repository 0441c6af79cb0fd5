// The ONE typed socket.io event map between a site agent and the coordinator. Both apps type their sockets with it:
//   coordinator: Server<SiteToServerEvents, ServerToSiteEvents>      site: Socket<ServerToSiteEvents, SiteToServerEvents>
// Every event carries one payload object and, where the sender needs an answer, an ack callback that receives
// `{ ok: true, ... }` or `{ ok: false, code, message }` (see errors.ts). Emit with `socket.timeout(ms).emitWithAck`.
//
// | event              | direction   | payload                                          | ack (ok: true, ...)                          |
// |--------------------|-------------|--------------------------------------------------|----------------------------------------------|
// | site:hello         | site → coord| protocolVersion, agentVersion, capabilities      | protocolVersion, siteId, serverTime,         |
// |                    |             | {backends, cores, memoryMb, gpus, jobKinds},     | heartbeatIntervalMs, jobs? [{jobId, attempt, |
// |                    |             | dataset {cases, slices, train/test counts},      | action resume|done|abandon, leaseExpiresAt}] |
// |                    |             | inFlight? [{jobId, attempt, state}]              | 'protocol_mismatch' when versions differ     |
// | heartbeat          | site → coord| seq, sentAt, activeJobs [{jobId, attempt}], load | serverTime, leaseLost? [jobId]               |
// | job:offer          | coord → site| job {id, kind, attempt, leaseExpiresAt, studyId, | {} = received; an error reply declines       |
// |                    |             |      roundId, payload, inputs?}                  |                                              |
// | job:accept         | site → coord| jobId, attempt                                   | jobId, attempt, leaseExpiresAt (the lease)   |
// | job:progress       | site → coord| jobId, attempt, fraction, stage, message, metrics| jobId, attempt, leaseExpiresAt (renewed);    |
// |                    |             |                                                  | 'lease_lost' = stop working on it            |
// | job:result         | site → coord| jobId, attempt, metrics, outputs [{role, sha256, | {}                                           |
// |                    |             | size}] (uploaded before by transfer), summary    |                                              |
// | job:failed         | site → coord| jobId, attempt, code, message, retryable         | {}                                           |
// | job:cancel         | coord → site| jobId, attempt, reason                           | {}                                           |
// | blob:fetch         | site → coord| jobId, attempt, sha256 (one of the job's inputs) | transferId, blob, once the coordinator's     |
// |                    |             |                                                  | transfer to the site has committed           |
// | transfer:begin     | both        | transferId, kind, size, sha256, chunkSize, meta  | TransferStatus (idempotent; a different      |
// |                    |             |                                                  | size/sha/chunkSize → 'transfer_conflict')    |
// | transfer:chunk     | both        | transferId, index, bytes (binary ≤ 1 MiB),       | index, duplicate                             |
// |                    |             | sha256? (of the chunk)                           |                                              |
// | transfer:status    | both        | transferId                                       | TransferStatus: state unknown|receiving|     |
// |                    |             |                                                  | committed, received ranges, receivedBytes,   |
// |                    |             |                                                  | blob once committed                          |
// | transfer:commit    | both        | transferId                                       | transferId, blob {sha256, size} (idempotent) |
// | transfer:abort     | both        | transferId, reason?                              | {}                                           |
//
// Transfers run from the side that has the bytes: sites upload samples, generator weights and round updates; the
// coordinator sends global weights, segmenters and audit pools down. The receiver of a transfer handles these events.
import type * as z from 'zod';
import type { Reply } from './errors.js';
import {
  type BlobFetch,
  type BlobFetched,
  type ChunkAck,
  type CommitAck,
  type HeartbeatAck,
  type HelloAccepted,
  type LeaseGranted,
  type TransferStatus,
  blobFetchReplySchema,
  blobFetchSchema,
  chunkReplySchema,
  commitReplySchema,
  emptyReplySchema,
  heartbeatReplySchema,
  heartbeatSchema,
  helloReplySchema,
  jobAcceptSchema,
  jobCancelSchema,
  jobFailedSchema,
  jobOfferReplySchema,
  jobOfferSchema,
  jobProgressSchema,
  jobResultSchema,
  leaseReplySchema,
  siteHelloSchema,
  transferAbortSchema,
  transferBeginSchema,
  transferChunkSchema,
  transferRefSchema,
  transferStatusReplySchema,
  type Heartbeat,
  type JobAccept,
  type JobCancel,
  type JobFailed,
  type JobOffer,
  type JobProgress,
  type JobResult,
  type SiteHello,
  type TransferAbort,
  type TransferBegin,
  type TransferChunk,
  type TransferRef,
} from './schemas.js';

export type AckCallback<T extends object> = (reply: Reply<T>) => void;
type Empty = Record<never, never>;

/** Transfer events, the same in both directions. */
export interface TransferEvents {
  'transfer:begin': (msg: TransferBegin, ack: AckCallback<TransferStatus>) => void;
  'transfer:chunk': (msg: TransferChunk, ack: AckCallback<ChunkAck>) => void;
  'transfer:status': (msg: TransferRef, ack: AckCallback<TransferStatus>) => void;
  'transfer:commit': (msg: TransferRef, ack: AckCallback<CommitAck>) => void;
  'transfer:abort': (msg: TransferAbort, ack: AckCallback<Empty>) => void;
}

export interface SiteToServerEvents extends TransferEvents {
  'site:hello': (msg: SiteHello, ack: AckCallback<HelloAccepted>) => void;
  heartbeat: (msg: Heartbeat, ack: AckCallback<HeartbeatAck>) => void;
  'job:accept': (msg: JobAccept, ack: AckCallback<LeaseGranted>) => void;
  'job:progress': (msg: JobProgress, ack: AckCallback<LeaseGranted>) => void;
  'job:result': (msg: JobResult, ack: AckCallback<Empty>) => void;
  'job:failed': (msg: JobFailed, ack: AckCallback<Empty>) => void;
  'blob:fetch': (msg: BlobFetch, ack: AckCallback<BlobFetched>) => void;
}

export interface ServerToSiteEvents extends TransferEvents {
  'job:offer': (msg: JobOffer, ack: AckCallback<Empty>) => void;
  'job:cancel': (msg: JobCancel, ack: AckCallback<Empty>) => void;
}

/** The payload type of an event signature. */
export type PayloadOf<F> = F extends (msg: infer P, ...rest: never[]) => void ? P : never;
/** What the event's ack callback receives. */
export type ReplyOf<F> = F extends (msg: never, ack: (reply: infer R) => void) => void ? R : never;

type PayloadSchemas<M> = { [E in keyof M]: z.ZodType<PayloadOf<M[E]>> };
type ReplySchemas<M> = { [E in keyof M]: z.ZodType<ReplyOf<M[E]>> };

const transferPayloadSchemas = {
  'transfer:begin': transferBeginSchema,
  'transfer:chunk': transferChunkSchema,
  'transfer:status': transferRefSchema,
  'transfer:commit': transferRefSchema,
  'transfer:abort': transferAbortSchema,
} satisfies PayloadSchemas<TransferEvents>;

const transferReplySchemas = {
  'transfer:begin': transferStatusReplySchema,
  'transfer:chunk': chunkReplySchema,
  'transfer:status': transferStatusReplySchema,
  'transfer:commit': commitReplySchema,
  'transfer:abort': emptyReplySchema,
} satisfies ReplySchemas<TransferEvents>;

/** The schema a coordinator validates each incoming site event with. */
export const siteToServerSchemas = {
  ...transferPayloadSchemas,
  'site:hello': siteHelloSchema,
  heartbeat: heartbeatSchema,
  'job:accept': jobAcceptSchema,
  'job:progress': jobProgressSchema,
  'job:result': jobResultSchema,
  'job:failed': jobFailedSchema,
  'blob:fetch': blobFetchSchema,
} satisfies PayloadSchemas<SiteToServerEvents>;

/** The schema a site validates each incoming coordinator event with. */
export const serverToSiteSchemas = {
  ...transferPayloadSchemas,
  'job:offer': jobOfferSchema,
  'job:cancel': jobCancelSchema,
} satisfies PayloadSchemas<ServerToSiteEvents>;

/** Schemas of the acks a site receives for the events it sends (a peer's reply is untrusted input too). */
export const siteToServerReplySchemas = {
  ...transferReplySchemas,
  'site:hello': helloReplySchema,
  heartbeat: heartbeatReplySchema,
  'job:accept': leaseReplySchema,
  'job:progress': leaseReplySchema,
  'job:result': emptyReplySchema,
  'job:failed': emptyReplySchema,
  'blob:fetch': blobFetchReplySchema,
} satisfies ReplySchemas<SiteToServerEvents>;

/** Schemas of the acks the coordinator receives for the events it sends. */
export const serverToSiteReplySchemas = {
  ...transferReplySchemas,
  'job:offer': jobOfferReplySchema,
  'job:cancel': emptyReplySchema,
} satisfies ReplySchemas<ServerToSiteEvents>;

export const transferEventNames = Object.keys(transferPayloadSchemas) as Array<keyof TransferEvents>;
export { transferPayloadSchemas, transferReplySchemas };
