import { Inject, Injectable, type Provider } from '@nestjs/common';
import {
  InMemoryReplayCache,
  type ReplayCache,
  type VerifiedSiteAssertion,
  verifySiteAssertion,
} from '@fedsynth/common/identity/index';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';
import { Clock } from '../core/clock.js';
import { SitesService } from '../sites/sites.service.js';
import { commonClock } from './common-clock.js';

/** Injection token of the jti replay cache (in memory: one coordinator process). */
export const REPLAY_CACHE = Symbol.for('fedsynth.coordinator.replay-cache');

export const replayCacheProvider: Provider = {
  provide: REPLAY_CACHE,
  inject: [Clock],
  useFactory: (clock: Clock): ReplayCache => new InMemoryReplayCache({ clock: commonClock(clock) }),
};

/** Allowed difference between a site's clock and the coordinator's, seconds. */
export const ASSERTION_CLOCK_TOLERANCE_SECONDS = 30;

/**
 * Verifies the site assertion of a socket handshake: signed by an enrolled, active site key (looked up by kid, any
 * status so that a revoked key is told apart), for this coordinator's audience, fresh, iss = sub = the key's site,
 * never seen before (jti). Throws AuthError with its code.
 */
@Injectable()
export class SiteAuthenticator {
  constructor(
    private readonly sites: SitesService,
    @Inject(REPLAY_CACHE) private readonly replayCache: ReplayCache,
    @Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig,
    private readonly clock: Clock,
  ) {}

  authenticate(token: unknown): Promise<VerifiedSiteAssertion> {
    return verifySiteAssertion(typeof token === 'string' ? token : undefined, {
      audience: this.config.audience,
      resolveKey: async (kid) => {
        const site = await this.sites.findByKid(kid);
        if (!site?.publicJwk) return undefined;
        return { siteId: site.id, publicJwk: site.publicJwk, status: site.status };
      },
      replayCache: this.replayCache,
      clock: commonClock(this.clock),
      clockToleranceSeconds: ASSERTION_CLOCK_TOLERANCE_SECONDS,
    });
  }
}
