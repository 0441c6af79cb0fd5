import { RECOMMENDED_MAX_HTTP_BUFFER_SIZE } from '@fedsynth/common/protocol/index';

/** Socket path and engine.io limits of the gateway (static: the decorator needs them at class definition). */
export const FEDERATION_SOCKET_PATH = '/socket.io';
export const FEDERATION_MAX_HTTP_BUFFER_SIZE = RECOMMENDED_MAX_HTTP_BUFFER_SIZE;

export interface FederationOptions {
  /** told to sites in the hello ack; heartbeats mark the site seen and renew its leases */
  heartbeatIntervalMs: number;
  /** how long the coordinator waits for a site's ack of a job offer / cancel */
  offerAckTimeoutMs: number;
  /** jobs offered to a site at once (it declines what it cannot take now with 'busy') */
  maxOffersPerSite: number;
  /** largest upload accepted */
  maxTransferBytes: number;
  /** uploads in progress per site */
  maxActiveTransfersPerSite: number;
  /** abandoned uploads (no chunk for this long) are removed from staging */
  transferIncompleteTtlMs: number;
  /** commit tombstones (answering late status/commit requests) are removed after this long */
  transferCommittedTtlMs: number;
  /** how often staging is swept (0 = never) */
  transferSweepIntervalMs: number;
  /** at shutdown, how long to wait for handlers in progress */
  drainTimeoutMs: number;
}

export const DEFAULT_FEDERATION_OPTIONS: FederationOptions = Object.freeze({
  heartbeatIntervalMs: 15_000,
  offerAckTimeoutMs: 10_000,
  maxOffersPerSite: 16,
  maxTransferBytes: 16 * 2 ** 30,
  maxActiveTransfersPerSite: 16,
  transferIncompleteTtlMs: 24 * 3600_000,
  transferCommittedTtlMs: 7 * 24 * 3600_000,
  transferSweepIntervalMs: 3600_000,
  drainTimeoutMs: 5_000,
});

/** Injection token of the {@link FederationOptions}. */
export const FEDERATION_OPTIONS = Symbol.for('fedsynth.coordinator.federation-options');
