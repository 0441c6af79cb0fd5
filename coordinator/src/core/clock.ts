import { Injectable } from '@nestjs/common';

/** The time source of every service (tokens, expiry, uptime): swap it for a {@link ManualClock} in tests. */
@Injectable()
export class Clock {
  now(): Date {
    return new Date();
  }

  /** Seconds since the Unix epoch, as JWT claims count them. */
  nowSeconds(): number {
    return Math.floor(this.now().getTime() / 1000);
  }
}

/** A clock that only moves when told to. */
export class ManualClock extends Clock {
  private current: number;

  constructor(start: Date | number = Date.now()) {
    super();
    this.current = typeof start === 'number' ? start : start.getTime();
  }

  override now(): Date {
    return new Date(this.current);
  }

  advance(ms: number): void {
    this.current += ms;
  }

  set(to: Date | number): void {
    this.current = typeof to === 'number' ? to : to.getTime();
  }
}
