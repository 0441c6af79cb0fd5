import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { SiteHello } from '@fedsynth/common/protocol/index';
import { IsNull, type Repository } from 'typeorm';
import { Clock } from '../core/clock.js';
import { RandomSource } from '../core/random-source.js';
import { SiteSession } from './site-session.entity.js';

/** Site sessions (one row per connection that said hello): capabilities, data set counts, connect/disconnect. */
@Injectable()
export class SiteSessionsService implements OnApplicationBootstrap {
  private readonly logger = new Logger(SiteSessionsService.name);

  constructor(
    @InjectRepository(SiteSession) private readonly sessions: Repository<SiteSession>,
    private readonly clock: Clock,
    private readonly random: RandomSource,
  ) {}

  /** Sessions a previous coordinator process left open are over. */
  async onApplicationBootstrap(): Promise<void> {
    const r = await this.sessions.update(
      { disconnectedAt: IsNull() },
      { disconnectedAt: this.clock.now(), disconnectReason: 'coordinator restarted' },
    );
    if (r.affected) this.logger.log(`closed ${r.affected} session(s) left open by the previous process`);
  }

  /** Records a hello: a new session, or (a second hello on one connection) the same one updated. */
  async hello(
    existingId: string | undefined,
    conn: { siteId: string; socketId: string; connectedAt: Date; remoteAddress: string | null },
    hello: SiteHello,
  ): Promise<SiteSession> {
    const fields = {
      helloAt: this.clock.now(),
      protocolVersion: hello.protocolVersion,
      agentVersion: hello.agentVersion,
      capabilities: hello.capabilities,
      dataset: hello.dataset,
    };
    if (existingId) {
      await this.sessions.update({ id: existingId }, fields);
      return this.sessions.findOneByOrFail({ id: existingId });
    }
    const session = this.sessions.create({
      id: this.random.uuid(),
      siteId: conn.siteId,
      socketId: conn.socketId.slice(0, 64),
      connectedAt: conn.connectedAt,
      disconnectedAt: null,
      disconnectReason: null,
      remoteAddress: conn.remoteAddress?.slice(0, 64) ?? null,
      ...fields,
    });
    await this.sessions.insert(session);
    return session;
  }

  async close(sessionId: string, reason: string): Promise<void> {
    await this.sessions.update(
      { id: sessionId, disconnectedAt: IsNull() },
      { disconnectedAt: this.clock.now(), disconnectReason: reason.slice(0, 200) },
    );
  }

  /** The site's most recent session (its current capabilities), if it ever said hello. */
  latest(siteId: string): Promise<SiteSession | null> {
    return this.sessions.findOne({ where: { siteId }, order: { helloAt: 'DESC', id: 'DESC' } });
  }

  /** Live sessions (sites connected now). */
  open(): Promise<SiteSession[]> {
    return this.sessions.find({ where: { disconnectedAt: IsNull() }, order: { helloAt: 'ASC' } });
  }

  forSite(siteId: string): Promise<SiteSession[]> {
    return this.sessions.find({ where: { siteId }, order: { helloAt: 'ASC', id: 'ASC' } });
  }
}
