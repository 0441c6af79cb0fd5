import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  ConfigError,
  coordinatorAudienceForUrl,
  describeDatabase,
  resolveCoordinatorConfig,
} from './coordinator-config.js';

const opts = { cwd: '/srv/fedsynth', hostname: 'coord.example.org' };

function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('the configuration was accepted');
}

describe('coordinator configuration', () => {
  it('has documented defaults', () => {
    const c = resolveCoordinatorConfig({}, opts);
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.dataDir, '/srv/fedsynth/.fedsynth/coordinator');
    assert.deepEqual(c.db, {
      dialect: 'sqlite',
      path: '/srv/fedsynth/.fedsynth/coordinator/coordinator.sqlite',
    });
    assert.equal(c.publicUrl, 'http://coord.example.org:8080');
    assert.equal(c.audience, 'fedsynth-coordinator:coord.example.org:8080');
    assert.equal(c.logLevel, 'info');
    assert.equal(c.enrollmentTokenTtlSeconds, 86400);
    assert.equal(c.userTokenTtlSeconds, 3600);
    assert.ok(Object.isFrozen(c));
  });

  it('takes options over FEDSYNTH_* variables over defaults', () => {
    const env = { FEDSYNTH_PORT: '9000', FEDSYNTH_LOG_LEVEL: 'DEBUG', FEDSYNTH_DATA_DIR: 'state' };
    const c = resolveCoordinatorConfig({ port: '9100' }, { ...opts, env });
    assert.equal(c.port, 9100);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.dataDir, path.resolve('/srv/fedsynth', 'state'));
    assert.equal(c.db.dialect === 'sqlite' && c.db.path, '/srv/fedsynth/state/coordinator.sqlite');
  });

  it('ignores FEDSYNTH_* unless an environment is passed', () => {
    const saved = process.env.FEDSYNTH_PORT;
    process.env.FEDSYNTH_PORT = 'not a port';
    try {
      assert.equal(resolveCoordinatorConfig({}, opts).port, 8080);
    } finally {
      if (saved === undefined) delete process.env.FEDSYNTH_PORT;
      else process.env.FEDSYNTH_PORT = saved;
    }
  });

  it('derives the audience from the public URL', () => {
    assert.equal(
      coordinatorAudienceForUrl('https://Coord.Example.org/'),
      'fedsynth-coordinator:coord.example.org:443',
    );
    assert.equal(coordinatorAudienceForUrl('http://10.0.0.5:8443'), 'fedsynth-coordinator:10.0.0.5:8443');
    const c = resolveCoordinatorConfig({ publicUrl: 'https://fed.example.org' }, opts);
    assert.equal(c.audience, 'fedsynth-coordinator:fed.example.org:443');
    assert.equal(resolveCoordinatorConfig({ audience: 'consortium-a' }, opts).audience, 'consortium-a');
  });

  it('parses sqlite and postgres database URLs', () => {
    assert.deepEqual(resolveCoordinatorConfig({ db: 'sqlite:data/c.db' }, opts).db, {
      dialect: 'sqlite',
      path: '/srv/fedsynth/data/c.db',
    });
    assert.deepEqual(resolveCoordinatorConfig({ db: 'sqlite::memory:' }, opts).db, {
      dialect: 'sqlite',
      path: ':memory:',
    });
    const pg = resolveCoordinatorConfig(
      { db: 'postgres://u:secret@db:5432/fed?schema=coord&sslmode=require' },
      opts,
    );
    assert.deepEqual(pg.db, {
      dialect: 'postgres',
      url: 'postgres://u:secret@db:5432/fed?sslmode=require',
      schema: 'coord',
    });
    assert.equal(describeDatabase(pg.db), 'postgres://u:***@db:5432/fed?sslmode=require (schema coord)');
    assert.equal(resolveCoordinatorConfig({ db: 'postgresql://db/fed' }, opts).db.dialect, 'postgres');
  });

  it('refuses a bad port, naming the key, the source and the value', () => {
    const e1 = refusal(() => resolveCoordinatorConfig({ port: 'eighty' }, opts));
    assert.match(e1.message, /port = "eighty" \(from option port\): must be an integer from 0 to 65535/);
    const e2 = refusal(() => resolveCoordinatorConfig({}, { ...opts, env: { FEDSYNTH_PORT: '70000' } }));
    assert.match(e2.message, /port = "70000" \(from FEDSYNTH_PORT\)/);
    refusal(() => resolveCoordinatorConfig({ port: -1 }, opts));
    refusal(() => resolveCoordinatorConfig({ port: 80.5 }, opts));
  });

  it('refuses a bad database URL, masking its password', () => {
    const e1 = refusal(() => resolveCoordinatorConfig({ db: 'mysql://root@db/fed' }, opts));
    assert.match(
      e1.message,
      /db = "mysql:\/\/root@db\/fed" \(from option db\): must be sqlite:PATH or postgres:/,
    );
    const e2 = refusal(() => resolveCoordinatorConfig({ db: 'postgres://u:hunter2@db' }, opts));
    assert.match(e2.message, /db = "postgres:\/\/u:\*\*\*@db"/);
    assert.doesNotMatch(e2.message, /hunter2/);
    refusal(() => resolveCoordinatorConfig({ db: 'sqlite:' }, opts));
    refusal(() => resolveCoordinatorConfig({ db: 'postgres://u@db/fed?schema=a;drop' }, opts));
  });

  it('refuses other bad values and reports all of them', () => {
    const e = refusal(() =>
      resolveCoordinatorConfig(
        { logLevel: 'loud', publicUrl: 'ftp://x', enrollmentTokenTtlSeconds: 5, audience: 'has space' },
        opts,
      ),
    );
    assert.equal(e.problems.length, 4);
    assert.match(e.message, /logLevel = "loud"/);
    assert.match(e.message, /publicUrl = "ftp:\/\/x"/);
    assert.match(e.message, /enrollmentTokenTtlSeconds = 5/);
    assert.match(e.message, /audience = "has space"/);
  });

  it('refuses unknown keys', () => {
    const e = refusal(() => resolveCoordinatorConfig({ prot: 1 } as never, opts));
    assert.match(e.message, /unknown configuration key\(s\) prot/);
  });
});
