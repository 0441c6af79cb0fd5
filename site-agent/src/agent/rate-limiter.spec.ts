import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket, parseByteRate, rateLimitedEmitter } from './rate-limiter.js';

function fakeClock() {
  const clock = {
    t: 0,
    slept: [] as number[],
    now: () => clock.t,
    sleep: async (ms: number) => {
      clock.slept.push(ms);
      clock.t += ms;
    },
  };
  return clock;
}

test('a token bucket lets a burst through, then paces to the rate', async () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(1000, 250, clock);
  await bucket.take(250); // the burst
  assert.deepEqual(clock.slept, []);
  await bucket.take(100);
  assert.deepEqual(clock.slept, [100]);
  for (let i = 0; i < 10; i++) await bucket.take(100);
  assert.equal(clock.t, 1100, '1100 bytes after the burst took 1.1 s at 1000 B/s');
  // a request larger than the burst waits for a full bucket, then overdraws (the average holds)
  await bucket.take(1000);
  await bucket.take(1);
  assert.ok(clock.t >= 1100 + 1000);
});

test('only transfer chunks are paced', async () => {
  const clock = fakeClock();
  const sent: string[] = [];
  const emitter = rateLimitedEmitter(
    { emitWithAck: async (event) => void sent.push(event) },
    new TokenBucket(1000, 100, clock),
  );
  await emitter.emitWithAck('transfer:chunk', { bytes: Buffer.alloc(100) }, 1000);
  await emitter.emitWithAck('transfer:chunk', { bytes: Buffer.alloc(100) }, 1000);
  await emitter.emitWithAck('transfer:commit', { transferId: 'x' }, 1000);
  assert.deepEqual(sent, ['transfer:chunk', 'transfer:chunk', 'transfer:commit']);
  assert.equal(clock.t, 100);
});

test('parses byte rates', () => {
  assert.equal(parseByteRate('100000'), 100_000);
  assert.equal(parseByteRate('2MB'), 2_000_000);
  assert.equal(parseByteRate('512KiB'), 512 * 1024);
  assert.equal(parseByteRate('1.5MiB/s'), 1.5 * 1024 * 1024);
  assert.equal(parseByteRate('1gb'), 1e9);
  assert.throws(() => parseByteRate('fast'), RangeError);
  assert.throws(() => parseByteRate('0'), RangeError);
});
