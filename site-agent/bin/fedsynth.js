#!/usr/bin/env node
// Thin launcher: the CLI itself is compiled TypeScript (site-agent/src/cli).
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('fedsynth: the CLI is not built yet. Run `npm run build` at the repository root.');
  process.exit(1);
}
await import(main.href);
