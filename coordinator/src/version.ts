import { readFileSync } from 'node:fs';

/** The coordinator package's version (from coordinator/package.json, beside dist/ and src/). */
export const COORDINATOR_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
