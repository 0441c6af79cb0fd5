#!/usr/bin/env node
// Runs every compiled spec (`*.spec.js` beside the sources, `*.e2e-spec.js` under test/) with node's test runner.
// Usage: node test/run-tests.mjs [--unit] [filter...]   (filters match against the file path)
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const unitOnly = args.includes('--unit');
const filters = args.filter((a) => !a.startsWith('--'));

function walk(dir, out) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) walk(full, out);
    else if (name.endsWith('.spec.js') || (!unitOnly && name.endsWith('.e2e-spec.js'))) out.push(full);
  }
  return out;
}

const files = ['common', 'coordinator', 'site-agent', 'test']
  .flatMap((p) => walk(path.join(root, p, 'dist'), []))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no spec files found (did `tsc -b` run?)');
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-reporter=spec', ...files.map((f) => path.relative(root, f))],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
