// A site's Ed25519 key pair: created once at enrolment, kept in the site's state dir as a private JWK (mode 0600).
// The public half is registered with the coordinator; its RFC 7638 thumbprint is the key id (`kid`).
import { constants } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  CompactSign,
  compactVerify,
} from 'jose';
import type { CryptoKey, JWK } from 'jose';
import * as z from 'zod';

export const SITE_KEY_ALG = 'EdDSA';
export const SITE_KEY_FILE = 'site-key.jwk.json';

/** base64url of 32 bytes: 43 characters, no padding */
const b64u32 = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'expected 32 bytes, base64url without padding');

/** The public JWK a site registers; anything else (an RSA key, a private `d`) is refused. */
export const publicSiteJwkSchema = z.strictObject({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: b64u32,
  kid: z.string().max(128).optional(),
  alg: z.literal(SITE_KEY_ALG).optional(),
  use: z.literal('sig').optional(),
});
export type PublicSiteJwk = { kty: 'OKP'; crv: 'Ed25519'; x: string };

const privateSiteJwkFileSchema = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: b64u32,
  d: b64u32,
  kid: z.string().optional(),
});
export type PrivateSiteJwk = PublicSiteJwk & { d: string };

export interface SiteKeyPair {
  /** RFC 7638 thumbprint of the public JWK */
  kid: string;
  publicJwk: PublicSiteJwk;
  privateJwk: PrivateSiteJwk;
  /** non-extractable signing key */
  privateKey: CryptoKey;
}

export type SiteKeyFileProblem = 'missing' | 'insecure_permissions' | 'not_a_file' | 'invalid';

export class SiteKeyFileError extends Error {
  override readonly name = 'SiteKeyFileError';
  constructor(
    readonly problem: SiteKeyFileProblem,
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

/** Only the members RFC 7638 hashes, in a fresh object (drops kid/alg/use/d). */
export function toPublicSiteJwk(jwk: { kty?: unknown; crv?: unknown; x?: unknown }): PublicSiteJwk {
  const parsed = publicSiteJwkSchema.pick({ kty: true, crv: true, x: true }).parse({
    kty: jwk.kty,
    crv: jwk.crv,
    x: jwk.x,
  });
  return { kty: parsed.kty, crv: parsed.crv, x: parsed.x };
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url): the site key's `kid`. */
export function publicJwkThumbprint(jwk: PublicSiteJwk | JWK): Promise<string> {
  return calculateJwkThumbprint(toPublicSiteJwk(jwk), 'sha256');
}

async function importPrivate(jwk: PrivateSiteJwk): Promise<CryptoKey> {
  const key = await importJWK({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d }, SITE_KEY_ALG, {
    extractable: false,
  });
  return key as CryptoKey;
}

export async function generateSiteKeyPair(): Promise<SiteKeyPair> {
  const { privateKey: extractable, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  const publicJwk = toPublicSiteJwk(await exportJWK(publicKey));
  const exported = await exportJWK(extractable);
  const privateJwk: PrivateSiteJwk = { ...publicJwk, d: String(exported.d) };
  return {
    kid: await publicJwkThumbprint(publicJwk),
    publicJwk,
    privateJwk,
    privateKey: await importPrivate(privateJwk),
  };
}

export function siteKeyPath(stateDir: string): string {
  return path.join(stateDir, SITE_KEY_FILE);
}

/**
 * Writes the private JWK to `<stateDir>/site-key.jwk.json` with mode 0600 (temp file + rename, so a crash never
 * leaves half a key). Refuses to replace an existing key unless `overwrite` is set: losing it means re-enrolling.
 */
export async function saveSiteKey(
  stateDir: string,
  key: Pick<SiteKeyPair, 'kid' | 'privateJwk'>,
  options: { overwrite?: boolean } = {},
): Promise<string> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const file = siteKeyPath(stateDir);
  if (!options.overwrite) {
    const exists = await stat(file).then(
      () => true,
      () => false,
    );
    if (exists) {
      throw new SiteKeyFileError(
        'invalid',
        file,
        `a site key already exists at ${file}; refusing to replace it`,
      );
    }
  }
  const body =
    JSON.stringify({ ...key.privateJwk, kid: key.kid, alg: SITE_KEY_ALG, use: 'sig' }, null, 2) + '\n';
  const tmp = `${file}.${randomUUID()}.tmp`;
  const handle = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await handle.chmod(0o600); // the umask can only remove bits, but be explicit
    await handle.writeFile(body, 'utf8');
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(tmp, file);
  return file;
}

/**
 * Reads the site's key. Refuses a key file that the group or others could read (like ssh does), a missing one, or
 * one whose public half does not belong to its private half; each with the file and the fix in the message.
 */
export async function loadSiteKey(stateDir: string): Promise<SiteKeyPair> {
  const file = siteKeyPath(stateDir);
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      throw new SiteKeyFileError('missing', file, `no site key at ${file}: enrol this site first`);
    }
    throw err;
  });
  if (!st.isFile()) throw new SiteKeyFileError('not_a_file', file, `site key ${file} is not a regular file`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw new SiteKeyFileError(
      'insecure_permissions',
      file,
      `site key ${file} has mode ${mode}: it must not be readable by group or others. ` +
        `Run \`chmod 600 ${file}\` (and consider the key exposed: re-enrol if others could have read it)`,
    );
  }
  const handle = await open(file, 'r');
  let text: string;
  try {
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new SiteKeyFileError('invalid', file, `site key ${file} is not valid JSON`);
  }
  const parsed = privateSiteJwkFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new SiteKeyFileError('invalid', file, `site key ${file} is not an Ed25519 private JWK`);
  }
  const publicJwk = toPublicSiteJwk(parsed.data);
  const privateJwk: PrivateSiteJwk = { ...publicJwk, d: parsed.data.d };
  const kid = await publicJwkThumbprint(publicJwk);
  if (parsed.data.kid !== undefined && parsed.data.kid !== kid) {
    throw new SiteKeyFileError('invalid', file, `site key ${file}: kid does not match the key's thumbprint`);
  }
  let privateKey: CryptoKey;
  try {
    privateKey = await importPrivate(privateJwk);
  } catch {
    throw new SiteKeyFileError(
      'invalid',
      file,
      `site key ${file} could not be imported as an Ed25519 key (does x belong to d?)`,
    );
  }
  // The stored x must be the public half of d: sign a probe and verify it with x.
  const probe = await new CompactSign(new TextEncoder().encode('fedsynth-site-key-probe'))
    .setProtectedHeader({ alg: SITE_KEY_ALG })
    .sign(privateKey);
  const verified = await compactVerify(probe, await importJWK(publicJwk, SITE_KEY_ALG)).then(
    () => true,
    () => false,
  );
  if (!verified) {
    throw new SiteKeyFileError(
      'invalid',
      file,
      `site key ${file}: public part does not match the private part`,
    );
  }
  return { kid, publicJwk, privateJwk, privateKey };
}
