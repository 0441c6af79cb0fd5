// `fedsynth site enroll`: create the site's Ed25519 key, prove possession of it together with the one-time
// enrolment token, register it with the coordinator, and record what the site needs to connect later.
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { coordinatorAudienceForUrl } from '@fedsynth/coordinator/config/coordinator-config';
import {
  type Clock,
  type SiteKeyPair,
  createEnrollmentProof,
  generateSiteKeyPair,
  loadSiteKey,
  saveSiteKey,
  siteKeyPath,
  systemClock,
} from '@fedsynth/common/identity/index';
import { type SiteState, SiteStateError, siteStatePath, writeSiteState } from './site-state.js';

export interface EnrollSiteOptions {
  /** the coordinator's URL as given out of band (http(s), optional path prefix) */
  coordinatorUrl: string;
  /** the site id the administrator created */
  siteId: string;
  /** the one-time enrolment token */
  token: string;
  /** the site's private data folder */
  dataDir: string;
  stateDir: string;
  /** expected site name (a check: the coordinator's name for the site must match) */
  name?: string;
  fetch?: typeof fetch;
  clock?: Clock;
}

export class EnrollmentError extends Error {
  override readonly name = 'EnrollmentError';
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The URL without query, fragment or trailing slash; http(s) only. */
export function normalizeCoordinatorUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new EnrollmentError(`--coordinator ${text} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EnrollmentError(`--coordinator must be an http(s) URL, not ${url.protocol}`);
  }
  if (url.username || url.password) throw new EnrollmentError('--coordinator must not carry credentials');
  url.search = '';
  url.hash = '';
  url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

/**
 * Enrols: key pair (saved 0600 before anything is sent; reused if an earlier attempt left one), audience computed
 * from the URL exactly as the coordinator computes its default, proof posted to `/api/sites/enroll`, then
 * `site.json`. Refuses a state directory that is enrolled already.
 */
export async function enrollSite(o: EnrollSiteOptions): Promise<SiteState> {
  const url = normalizeCoordinatorUrl(o.coordinatorUrl);
  const stateDir = path.resolve(o.stateDir);
  if (await exists(siteStatePath(stateDir))) {
    throw new SiteStateError(`${stateDir} already holds an enrolled site (${siteStatePath(stateDir)})`);
  }
  const audience = coordinatorAudienceForUrl(url);
  let key: SiteKeyPair;
  let created = false;
  if (await exists(siteKeyPath(stateDir))) {
    key = await loadSiteKey(stateDir); // a previous attempt stopped before site.json: same key, same proof
  } else {
    key = await generateSiteKeyPair();
    await saveSiteKey(stateDir, key);
    created = true;
  }
  const proof = await createEnrollmentProof({
    privateKey: key.privateKey,
    publicJwk: key.publicJwk,
    enrollmentToken: o.token,
    siteId: o.siteId,
    audience,
    clock: o.clock ?? systemClock,
  });
  const doFetch = o.fetch ?? fetch;
  let res: Response;
  try {
    res = await doFetch(`${url.href.replace(/\/+$/, '')}/api/sites/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ proof }),
    });
  } catch (error) {
    throw new EnrollmentError(`cannot reach the coordinator at ${url.href}: ${(error as Error).message}`);
  }
  const body = (await res.json().catch(() => undefined)) as
    { site?: { id?: string; name?: string; kid?: string }; message?: unknown } | undefined;
  if (res.status !== 200) {
    // a refusal is final for this key: drop it so that a new token can be tried with a new key
    if (created && res.status >= 400 && res.status < 500) await rm(siteKeyPath(stateDir), { force: true });
    const message = Array.isArray(body?.message)
      ? body.message.join('; ')
      : String(body?.message ?? res.statusText);
    throw new EnrollmentError(
      `the coordinator refused the enrolment (HTTP ${res.status}): ${message}`,
      res.status,
    );
  }
  if (body?.site?.id !== o.siteId || body.site.kid !== key.kid) {
    throw new EnrollmentError('the coordinator answered the enrolment with another site or key');
  }
  const siteName = String(body.site.name ?? o.name ?? o.siteId);
  const state: SiteState = {
    version: 1,
    siteId: o.siteId,
    siteName,
    coordinatorUrl: url.href.replace(/\/+$/, ''),
    audience,
    kid: key.kid,
    dataDir: path.resolve(o.dataDir),
    enrolledAt: new Date((o.clock ?? systemClock).now()).toISOString(),
  };
  await writeSiteState(stateDir, state);
  if (o.name !== undefined && o.name !== siteName) {
    throw new EnrollmentError(
      `enrolled, but the coordinator knows this site as "${siteName}", not "${o.name}" (state saved in ${stateDir})`,
    );
  }
  return state;
}
