import type { SiteHello } from '@fedsynth/common/protocol/index';
import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

export type SiteCapabilities = SiteHello['capabilities'];
export type SiteDatasetSummary = SiteHello['dataset'];

/**
 * One connection of a site that said hello: what it runs (capabilities, counts of its data set) and when it came and
 * went. The latest row of a site is its current description; a row without `disconnectedAt` is a live connection
 * (rows left open by a stopped coordinator are closed when the next one starts).
 */
@Entity({ name: 'site_sessions' })
@Index('IDX_site_sessions_site_hello', ['siteId', 'helloAt'])
export class SiteSession {
  @PrimaryColumn({ type: 'uuid' })
  id!: string;

  @Column({ name: 'site_id', type: 'uuid' })
  siteId!: string;

  /** the socket.io socket id, for logs */
  @Column({ name: 'socket_id', type: 'varchar', length: 64 })
  socketId!: string;

  @Column({ name: 'connected_at', type: Date })
  connectedAt!: Date;

  @Column({ name: 'hello_at', type: Date })
  helloAt!: Date;

  @Column({ name: 'disconnected_at', type: Date, nullable: true })
  disconnectedAt!: Date | null;

  @Column({ name: 'disconnect_reason', type: 'varchar', length: 200, nullable: true })
  disconnectReason!: string | null;

  @Column({ name: 'protocol_version', type: 'integer' })
  protocolVersion!: number;

  @Column({ name: 'agent_version', type: 'varchar', length: 64 })
  agentVersion!: string;

  @Column({ type: 'simple-json' })
  capabilities!: SiteCapabilities;

  @Column({ type: 'simple-json' })
  dataset!: SiteDatasetSummary;

  @Column({ name: 'remote_address', type: 'varchar', length: 64, nullable: true })
  remoteAddress!: string | null;
}
