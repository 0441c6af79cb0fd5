import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InMemoryReplayCache, ReplayCacheFullError } from './replay-cache.js';

test('remembers a key until its expiry, then forgets it', async () => {
  const clock = {
    t: 1_000_000,
    now() {
      return this.t;
    },
  };
  const cache = new InMemoryReplayCache({ clock, pruneIntervalMs: 0 });
  assert.equal(await cache.remember('a', 1_010), true);
  assert.equal(await cache.remember('a', 1_010), false);
  assert.equal(await cache.remember('b', 2_000), true);
  clock.t = 1_010_000;
  assert.equal(cache.size, 2);
  assert.equal(await cache.remember('c', 2_000), true); // prunes 'a' on the way
  assert.equal(cache.size, 2);
  assert.equal(await cache.remember('a', 1_500), true);
});

test('is bounded: prunes when full, and refuses rather than forgets live ids', async () => {
  const clock = {
    t: 0,
    now() {
      return this.t;
    },
  };
  const cache = new InMemoryReplayCache({ clock, maxEntries: 3, pruneIntervalMs: 1e9 });
  await cache.remember('a', 10);
  await cache.remember('b', 10);
  await cache.remember('c', 100);
  await assert.rejects(cache.remember('d', 100), ReplayCacheFullError);
  clock.t = 20_000; // a and b have expired
  assert.equal(await cache.remember('d', 100), true);
  assert.equal(cache.size, 2);
  assert.equal(await cache.remember('c', 100), false);
});
