/**
 * The benchmark targets, each its own process: the mock upstream (`direct`), the bare undici
 * proxy, Palisade built from dist/, and the Portkey gateway.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { freePort, spawnLogged, waitForHttp, type Child } from './processes.js';
import { transpileEntry } from './transpile.js';

export const TARGET_NAMES = ['direct', 'bare', 'palisade', 'portkey'] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export interface Target {
  name: TargetName;
  /** `http://127.0.0.1:PORT` */
  origin: string;
  /** The process serving `origin`, for RSS. */
  pid: number;
  /** Headers every request to this target carries besides content-type. */
  headers: Record<string, string>;
  /**
   * Headers for Anthropic's Messages API (`x-api-key`, `anthropic-version`); only Palisade
   * serves it, so only Palisade has them.
   */
  messagesHeaders?: Record<string, string>;
  child: Child;
}

export interface BenchContext {
  /** The repository root: children run from here with relative paths. */
  root: string;
  /** A private temporary directory for logs and Palisade's home. */
  workDir: string;
}

export const CHAT_PATH = '/v1/chat/completions';
const MESSAGES = [{ role: 'user', content: 'Say hello.' }];
export const CHAT_BODY = JSON.stringify({
  model: 'mock-small',
  messages: MESSAGES,
  max_tokens: 16,
});
export const STREAM_BODY = JSON.stringify({
  model: 'mock-small',
  messages: MESSAGES,
  max_tokens: 16,
  stream: true,
});
export const ENDLESS_BODY = JSON.stringify({
  model: 'endless-stream',
  messages: MESSAGES,
  max_tokens: 16,
  stream: true,
});

export const MESSAGES_PATH = '/v1/messages';
/** Palisade maps it to `mock-small` (PALISADE_ANTHROPIC_MODELS), so both routes get one answer. */
const MESSAGES_MODEL = 'claude-bench';
export const MESSAGES_BODY = JSON.stringify({
  model: MESSAGES_MODEL,
  max_tokens: 16,
  messages: MESSAGES,
});
export const MESSAGES_STREAM_BODY = JSON.stringify({
  model: MESSAGES_MODEL,
  max_tokens: 16,
  messages: MESSAGES,
  stream: true,
});
const ANTHROPIC_VERSION = '2023-06-01';

export type RouteName = 'chat' | 'messages';

/** One API route of a target: where to send, what, and how a whole stream ends. */
export interface Route {
  name: RouteName;
  path: string;
  body: string;
  streamBody: string;
  /** Headers besides content-type. */
  headers: Record<string, string>;
  /** Text a complete streamed answer holds near its end. */
  streamEnd: string;
}

/** `POST /v1/chat/completions`, the route every target serves. */
export function chatRoute(target: Target): Route {
  return {
    name: 'chat',
    path: CHAT_PATH,
    body: CHAT_BODY,
    streamBody: STREAM_BODY,
    headers: target.headers,
    streamEnd: 'data: [DONE]',
  };
}

/** `POST /v1/messages` (Anthropic's Messages API), or undefined if the target lacks it. */
export function messagesRoute(target: Target): Route | undefined {
  if (target.messagesHeaders === undefined) return undefined;
  return {
    name: 'messages',
    path: MESSAGES_PATH,
    body: MESSAGES_BODY,
    streamBody: MESSAGES_STREAM_BODY,
    headers: target.messagesHeaders,
    streamEnd: '"type":"message_stop"',
  };
}

export function routeHeaders(route: Route): Record<string, string> {
  return { 'content-type': 'application/json', ...route.headers };
}

/** The upstream key the direct, bare and Portkey targets pass along (the mock ignores it). */
const UPSTREAM_KEY = 'Bearer sk-bench';
/** Streamed chunks from the mock are 2 ms apart, so a relay that buffers shows in TTFB. */
const MOCK_CHUNK_DELAY_MS = 2;

export function requestHeaders(target: Target): Record<string, string> {
  return { 'content-type': 'application/json', ...target.headers };
}

/** The parent's environment without any PALISADE_* setting that could change a target. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('PALISADE_')) env[name] = value;
  }
  return { ...env, NODE_ENV: 'production', ...extra };
}

async function startTsx(
  ctx: BenchContext,
  name: TargetName,
  script: string,
  args: string[],
): Promise<{ child: Child; origin: string }> {
  const port = await freePort();
  const child = spawnLogged(
    name,
    process.execPath,
    ['--import', 'tsx', script, '--port', String(port), ...args],
    { cwd: ctx.root, env: cleanEnv({}), logPath: join(ctx.workDir, `${name}.log`) },
  );
  return { child, origin: `http://127.0.0.1:${port}` };
}

export async function startDirect(ctx: BenchContext): Promise<Target> {
  const { child, origin } = await startTsx(ctx, 'direct', 'bench/mock-server.ts', [
    '--chunk-delay-ms',
    String(MOCK_CHUNK_DELAY_MS),
  ]);
  await waitForHttp(`${origin}/v1/models`, child);
  return {
    name: 'direct',
    origin,
    pid: child.pid,
    headers: { authorization: UPSTREAM_KEY },
    child,
  };
}

export async function startBare(ctx: BenchContext, upstream: string): Promise<Target> {
  const script = join(ctx.workDir, 'bare-proxy.mjs');
  transpileEntry(join(ctx.root, 'bench', 'bare-proxy.ts'), script);
  const port = await freePort();
  const child = spawnLogged(
    'bare',
    process.execPath,
    [script, '--port', String(port), '--upstream', upstream],
    { cwd: ctx.root, env: cleanEnv({}), logPath: join(ctx.workDir, 'bare.log') },
  );
  const origin = `http://127.0.0.1:${port}`;
  await waitForHttp(`${origin}/v1/models`, child);
  return { name: 'bare', origin, pid: child.pid, headers: { authorization: UPSTREAM_KEY }, child };
}

export async function startPortkey(ctx: BenchContext, upstream: string): Promise<Target> {
  const { child, origin } = await startTsx(ctx, 'portkey', 'bench/portkey-server.ts', []);
  await waitForHttp(`${origin}/`, child);
  const headers = {
    authorization: UPSTREAM_KEY,
    'x-portkey-provider': 'openai',
    'x-portkey-custom-host': `${upstream}/v1`,
  };
  return { name: 'portkey', origin, pid: child.pid, headers, child };
}

// ---------------------------------------------------------------- Palisade

export const PALISADE_CLI = 'dist/cli/index.js';

/** Limits high enough not to throttle the load, yet still evaluated on every request. */
function palisadeEnv(): NodeJS.ProcessEnv {
  return cleanEnv({
    PALISADE_PROBE_LOCAL: 'false',
    PALISADE_LOG_LEVEL: 'info',
    PALISADE_RATE_LIMIT: '100000000',
    // The settings schema caps the burst at 1,000,000.
    PALISADE_RATE_BURST: '1000000',
    PALISADE_MAX_STREAMS: '5000',
    // Anthropic model names the Messages route accepts, all answered by the mock's model.
    PALISADE_ANTHROPIC_MODELS: 'claude-*=mock-small',
  });
}

/** Runs `npm run build`; on failure the error carries the end of its output. */
export function buildPalisade(ctx: BenchContext): void {
  const result = spawnSync('npm', ['run', 'build'], {
    cwd: ctx.root,
    encoding: 'utf8',
    timeout: 180_000,
  });
  if (result.status !== 0) {
    const output = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-8).join('\n');
    throw new Error(`npm run build failed:\n${output}`);
  }
}

/** `palisade keys create NAME` with limits too high to throttle; the key is printed once, on stdout. */
export function createKey(
  ctx: BenchContext,
  home: string,
  env: NodeJS.ProcessEnv,
  name = 'bench',
): string {
  const args = ['keys', 'create', name, '--rpm', '100000000', '--max-streams', '5000'];
  const result = spawnSync(process.execPath, [PALISADE_CLI, ...args, '--home', home], {
    cwd: ctx.root,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const key = /pk_[A-Za-z0-9_-]{43}/.exec(`${result.stdout}`)?.[0];
  if (result.status !== 0 || key === undefined) {
    const output = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-5).join('\n');
    throw new Error(`palisade keys create failed (exit ${result.status}): ${output}`);
  }
  return key;
}

export async function startPalisade(ctx: BenchContext, upstream: string): Promise<Target> {
  if (!existsSync(join(ctx.root, PALISADE_CLI))) {
    throw new Error(`${PALISADE_CLI} is missing: run npm run build`);
  }
  const home = join(ctx.workDir, 'palisade-home');
  const env = palisadeEnv();
  const key = createKey(ctx, home, env);
  const port = await freePort();
  const args = ['serve', '--home', home, '--port', String(port), '--upstream', `mock=${upstream}`];
  const child = spawnLogged('palisade', process.execPath, [PALISADE_CLI, ...args], {
    cwd: ctx.root,
    env,
    logPath: join(ctx.workDir, 'palisade.log'),
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitForHttp(`${origin}/healthz`, child);
  return {
    name: 'palisade',
    origin,
    pid: child.pid,
    headers: { authorization: `Bearer ${key}` },
    messagesHeaders: { 'x-api-key': key, 'anthropic-version': ANTHROPIC_VERSION },
    child,
  };
}

// ---------------------------------------------------------------- sanity check

async function post(
  target: Target,
  route: Route,
  body: string,
): Promise<{ status: number; text: string }> {
  const res = await request(`${target.origin}${route.path}`, {
    method: 'POST',
    headers: routeHeaders(route),
    body,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  return { status: res.statusCode, text: await res.body.text() };
}

async function checkOnce(target: Target, route: Route): Promise<string | undefined> {
  const json = await post(target, route, route.body);
  if (json.status !== 200 || !json.text.includes('Hello from mock-small')) {
    return `${route.path} answered ${json.status}: ${json.text.slice(0, 200)}`;
  }
  const stream = await post(target, route, route.streamBody);
  if (stream.status !== 200 || !stream.text.slice(-200).includes(route.streamEnd)) {
    return `streaming ${route.path} answered ${stream.status}: ${stream.text.slice(0, 200)}`;
  }
  return undefined;
}

/**
 * Proves the target relays a JSON and a streamed answer on `route` (default: chat
 * completions) before it is measured. Retries for a few seconds because a gateway may still
 * be fetching the upstream's model list.
 */
export async function checkTarget(
  target: Target,
  route: Route = chatRoute(target),
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let problem: string | undefined = 'not tried';
  while (Date.now() < deadline) {
    problem = await checkOnce(target, route).catch((error: Error) => error.message);
    if (problem === undefined) return;
    await sleep(250);
  }
  throw new Error(`${target.name} failed its check: ${problem}`);
}
