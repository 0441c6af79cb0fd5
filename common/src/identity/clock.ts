// Time as a dependency: production code reads the system clock, tests pass their own.

export interface Clock {
  /** milliseconds since the Unix epoch */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Whole seconds since the epoch, the unit of JWT `iat`/`exp`. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000);
}
