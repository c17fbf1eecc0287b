#!/usr/bin/env node
// Runs every unit test (src/**/*.test.ts) and end-to-end test (test/**/*.test.ts)
// with Node's own test runner, TypeScript loaded through tsx.
// The web app is built first (dist/web), since the browser tests load it.
// Extra arguments are passed on: `npm test -- --test-name-pattern=keys`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

function findTests(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTests(path));
    else if (entry.name.endsWith('.test.ts')) found.push(path);
  }
  return found;
}

// The browser and static-file tests serve the built web app: build it first (a second or two).
const build = spawnSync(
  process.execPath,
  [join('node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'],
  { stdio: 'inherit' },
);
if (build.status !== 0) process.exit(build.status ?? 1);

const args = process.argv.slice(2);
const explicit = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts'));
const files = explicit.length > 0 ? explicit : [...findTests('src'), ...findTests('test')].sort();
const reporter = process.env.CI ? ['--test-reporter=spec'] : [];

const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', ...reporter, ...flags, ...files],
  { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
process.exit(result.status ?? 1);
