import type { Clock as CommonClock } from '@fedsynth/common/identity/index';
import type { Clock } from '../core/clock.js';

/** The coordinator's clock in the shape common/ takes (epoch milliseconds). */
export function commonClock(clock: Clock): CommonClock {
  return { now: () => clock.now().getTime() };
}
