// Login, user tokens and the RolesGuard over real HTTP against a real database.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Module } from '@nestjs/common';
import { generateKeyPairSync } from 'node:crypto';
import { createPrivateKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { COORDINATOR_KEY_FILE } from '../keys/coordinator-key.service.js';
import {
  startTestCoordinator,
  TEST_AUDIENCE,
  TEST_PASSWORD,
  type TestCoordinator,
} from '../testing/test-coordinator.js';
import { testDialects } from '../testing/test-database.js';
import { Public, Roles } from './roles.decorator.js';
import { USER_TOKEN_TYPE } from './token.service.js';

@Controller('api/test-guard')
class GuardProbeController {
  @Get('undeclared')
  undeclared(): string {
    return 'should never be served';
  }

  @Public()
  @Get('public')
  open(): string {
    return 'open';
  }

  @Roles('researcher')
  @Get('researchers')
  researchers(): string {
    return 'researchers only';
  }
}

@Roles('auditor')
@Controller('api/test-guard-class')
class ClassRolesController {
  @Get()
  get(): string {
    return 'auditors';
  }
}

@Module({ controllers: [GuardProbeController, ClassRolesController] })
class GuardProbeModule {}

for (const dialect of testDialects()) {
  describe(`auth and roles (${dialect})`, () => {
    let c: TestCoordinator;
    let admin: string;
    let researcher: string;
    let auditor: string;

    before(async () => {
      c = await startTestCoordinator(dialect, { imports: [GuardProbeModule] });
      await c.createUser('alice', 'admin');
      admin = await c.login('alice');
      researcher = await c.tokenFor('researcher', 'rita');
      auditor = await c.tokenFor('auditor', 'aud');
    });
    after(() => c?.dispose());

    async function coordinatorKey() {
      return createPrivateKey(await readFile(path.join(c.database.dataDir, COORDINATOR_KEY_FILE), 'utf8'));
    }

    it('logs in with the right password and returns a coordinator-signed EdDSA token', async () => {
      const res = await c.request('POST', '/api/auth/login', {
        body: { username: 'Alice', password: TEST_PASSWORD },
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.tokenType, 'Bearer');
      assert.equal(res.body.expiresIn, 3600);
      assert.equal(res.body.user.username, 'alice');
      assert.equal(res.body.user.role, 'admin');
      assert.equal(res.body.user.passwordHash, undefined);
      const [header, payload] = (res.body.accessToken as string)
        .split('.')
        .slice(0, 2)
        .map((p) => JSON.parse(Buffer.from(p, 'base64url').toString()));
      assert.equal(header.alg, 'EdDSA');
      assert.equal(header.typ, USER_TOKEN_TYPE);
      assert.equal(payload.iss, TEST_AUDIENCE);
      assert.equal(payload.role, 'admin');
      assert.equal(payload.exp - payload.iat, 3600);
      assert.equal(payload.sub, res.body.user.id);
      const me = await c.request('GET', '/api/auth/me', { token: res.body.accessToken });
      assert.equal(me.status, 200);
      assert.deepEqual(me.body, { id: payload.sub, username: 'alice', role: 'admin' });
    });

    it('refuses a wrong password and an unknown user alike', async () => {
      const wrong = await c.request('POST', '/api/auth/login', {
        body: { username: 'alice', password: 'nope' },
      });
      const unknown = await c.request('POST', '/api/auth/login', {
        body: { username: 'mallory', password: 'nope' },
      });
      assert.equal(wrong.status, 401);
      assert.equal(unknown.status, 401);
      assert.equal(wrong.body.message, unknown.body.message);
      assert.equal(wrong.body.accessToken, undefined);
    });

    it('validates the login body', async () => {
      const res = await c.request('POST', '/api/auth/login', { body: { username: 'alice' } });
      assert.equal(res.status, 400);
      const extra = await c.request('POST', '/api/auth/login', {
        body: { username: 'a', password: 'b', role: 'admin' },
      });
      assert.equal(extra.status, 400);
    });

    it('refuses a disabled user at login and cancels the tokens it holds', async () => {
      const { id } = await c.createUser('dora', 'researcher');
      const token = await c.login('dora');
      assert.equal((await c.request('GET', '/api/auth/me', { token })).status, 200);
      const disabled = await c.request('POST', `/api/users/${id}/disable`, { token: admin });
      assert.equal(disabled.status, 200);
      assert.equal(disabled.body.disabled, true);
      const login = await c.request('POST', '/api/auth/login', {
        body: { username: 'dora', password: TEST_PASSWORD },
      });
      assert.equal(login.status, 401);
      assert.equal((await c.request('GET', '/api/auth/me', { token })).status, 401);
      await c.request('POST', `/api/users/${id}/enable`, { token: admin });
      assert.equal((await c.request('GET', '/api/auth/me', { token })).status, 200);
    });

    it('refuses an expired token', async () => {
      const token = await c.login('rita');
      c.clock.advance(3600_000 + 10_000);
      try {
        const res = await c.request('GET', '/api/auth/me', { token });
        assert.equal(res.status, 401);
        assert.match(res.body.message, /expired/);
      } finally {
        c.clock.advance(-(3600_000 + 10_000));
      }
      assert.equal((await c.request('GET', '/api/auth/me', { token })).status, 200);
    });

    it('refuses a token from another issuer, a tampered token and one signed by another key', async () => {
      const claims = JSON.parse(Buffer.from(researcher.split('.')[1], 'base64url').toString());
      const sign = (
        key: Parameters<SignJWT['sign']>[0],
        iss: string,
        payload = { username: 'rita', role: 'researcher' },
      ) =>
        new SignJWT(payload)
          .setProtectedHeader({ alg: 'EdDSA', typ: USER_TOKEN_TYPE })
          .setIssuer(iss)
          .setAudience(TEST_AUDIENCE)
          .setSubject(claims.sub)
          .setIssuedAt(claims.iat)
          .setExpirationTime(claims.exp)
          .setJti(crypto.randomUUID())
          .sign(key);
      const key = await coordinatorKey();
      // control: the same construction with the right issuer is accepted
      assert.equal(
        (await c.request('GET', '/api/auth/me', { token: await sign(key, TEST_AUDIENCE) })).status,
        200,
      );

      const otherIssuer = await sign(key, 'fedsynth-coordinator:elsewhere:8080');
      assert.equal((await c.request('GET', '/api/auth/me', { token: otherIssuer })).status, 401);

      const [h, , s] = researcher.split('.');
      const forged = Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url');
      const tampered = await c.request('GET', '/api/sites', { token: `${h}.${forged}.${s}` });
      assert.equal(tampered.status, 401);

      const stranger = generateKeyPairSync('ed25519').privateKey;
      assert.equal(
        (await c.request('GET', '/api/auth/me', { token: await sign(stranger, TEST_AUDIENCE) })).status,
        401,
      );

      const unsigned = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${researcher.split('.')[1]}.`;
      assert.equal((await c.request('GET', '/api/auth/me', { token: unsigned })).status, 401);
    });

    it('refuses a request without a token (401) and a role that is not allowed (403)', async () => {
      assert.equal((await c.request('GET', '/api/sites')).status, 401);
      assert.equal(
        (await c.request('GET', '/api/sites', { headers: { authorization: 'Basic YTpi' } })).status,
        401,
      );
      const denied = await c.request('POST', '/api/sites', { token: researcher, body: { name: 'site-x' } });
      assert.equal(denied.status, 403);
      assert.equal((await c.request('GET', '/api/users', { token: researcher })).status, 403);
      assert.equal((await c.request('GET', '/api/users', { token: auditor })).status, 403);
      assert.equal((await c.request('GET', '/api/sites', { token: auditor })).status, 200);
      assert.equal((await c.request('GET', '/api/users', { token: admin })).status, 200);
    });

    it('refuses every caller on a route that declares neither @Roles nor @Public', async () => {
      assert.equal((await c.request('GET', '/api/test-guard/undeclared')).status, 401);
      for (const token of [admin, auditor, researcher]) {
        const res = await c.request('GET', '/api/test-guard/undeclared', { token });
        assert.equal(res.status, 403);
        assert.doesNotMatch(JSON.stringify(res.body), /should never be served/);
      }
      assert.equal((await c.request('GET', '/api/test-guard/public')).body, 'open');
      assert.equal(
        (await c.request('GET', '/api/test-guard/researchers', { token: researcher })).status,
        200,
      );
      assert.equal((await c.request('GET', '/api/test-guard/researchers', { token: admin })).status, 403);
      assert.equal((await c.request('GET', '/api/test-guard-class', { token: auditor })).status, 200);
      assert.equal((await c.request('GET', '/api/test-guard-class', { token: researcher })).status, 403);
    });

    it('lets an admin create users, enforcing the password policy and unique names', async () => {
      const created = await c.request('POST', '/api/users', {
        token: admin,
        body: { username: 'Res.Two', role: 'researcher', password: 'long enough password' },
      });
      assert.equal(created.status, 201);
      assert.equal(created.body.username, 'res.two');
      assert.equal((await c.login('res.two', 'long enough password')).split('.').length, 3);
      const dup = await c.request('POST', '/api/users', {
        token: admin,
        body: { username: 'res.two', role: 'auditor', password: 'long enough password' },
      });
      assert.equal(dup.status, 409);
      const weak = await c.request('POST', '/api/users', {
        token: admin,
        body: { username: 'weak', role: 'auditor', password: 'short' },
      });
      assert.equal(weak.status, 400);
      const badRole = await c.request('POST', '/api/users', {
        token: admin,
        body: { username: 'god', role: 'root', password: 'long enough password' },
      });
      assert.equal(badRole.status, 400);
      const list = await c.request('GET', '/api/users', { token: admin });
      assert.ok(list.body.some((u: { username: string }) => u.username === 'res.two'));
      assert.ok(list.body.every((u: object) => !('passwordHash' in u)));
    });
  });
}
