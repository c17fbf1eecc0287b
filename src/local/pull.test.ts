import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { LookupAddress } from 'node:dns';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tinyGguf } from '../../test/fixtures/gguf.js';
import { parseBytes } from '../config/units.js';
import { createProgressPrinter, formatBytes } from './progress.js';
import {
  DEFAULT_MAX_BYTES,
  parseSource,
  pullModel,
  PullError,
  redirectDowngrade,
  shaFromEtag,
  type PullProgress,
} from './pull.js';

const MODEL = tinyGguf({ seed: 7 });
const MODEL_SHA = createHash('sha256').update(MODEL).digest('hex');
const OTHER = tinyGguf({ seed: 8 });

function newHome(): string {
  return mkdtempSync(join(tmpdir(), 'palisade-pull-'));
}

function modelsOf(home: string): string[] {
  const dir = join(home, 'models');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

type Handler = (req: IncomingMessage, res: ServerResponse, count: number) => void;

interface FileOptions {
  body: Buffer;
  etag?: string;
  lastModified?: string;
  /** Cut the connection after this many body bytes, on the first `cuts` requests. */
  cutAfter?: number;
  cuts?: number;
  ignoreRange?: boolean;
  chunked?: boolean;
  headers?: Record<string, string>;
}

/** A file served the way a CDN does: Range, If-Range, ETag; optionally a connection cut mid-body. */
function serveFile(options: FileOptions): Handler {
  let cuts = 0;
  return (req, res) => {
    const etag = options.etag ?? `"${createHash('md5').update(options.body).digest('hex')}"`;
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      etag,
      'accept-ranges': 'bytes',
      ...(options.lastModified ? { 'last-modified': options.lastModified } : {}),
      ...options.headers,
    };
    let body = options.body;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    const ifRange = req.headers['if-range'];
    const fresh = ifRange === undefined || ifRange === etag || ifRange === options.lastModified;
    if (range && fresh && !options.ignoreRange) {
      const start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
    }
    if (!options.chunked) headers['content-length'] = String(body.length);
    res.writeHead(status, headers);
    if (options.cutAfter !== undefined && cuts < (options.cuts ?? 1)) {
      cuts++;
      res.write(body.subarray(0, options.cutAfter));
      // Long enough for the bytes to be read before the connection goes.
      setTimeout(() => res.socket?.destroy(), 200);
      return;
    }
    // Several writes, so progress sees more than one chunk.
    const step = Math.ceil(body.length / 4);
    for (let i = 0; i < body.length; i += step) res.write(body.subarray(i, i + step));
    res.end();
  };
}

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
}

async function startServer(routes: Record<string, Handler>) {
  const seen: Seen[] = [];
  const counts = new Map<string, number>();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    seen.push({ path, headers: req.headers });
    const count = (counts.get(path) ?? 0) + 1;
    counts.set(path, count);
    const handler = routes[path];
    if (handler) handler(req, res, count);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    requests: (path: string) => seen.filter((s) => s.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const servers: Array<{ close(): Promise<void> }> = [];
async function server(routes: Record<string, Handler>) {
  const started = await startServer(routes);
  servers.push(started);
  return started;
}
after(() => Promise.all(servers.map((s) => s.close())));

function redirect(to: string, status = 302, headers: Record<string, string> = {}): Handler {
  return (_req, res) => res.writeHead(status, { location: to, ...headers }).end();
}

async function pullFails(promise: Promise<unknown>, message: RegExp, exitCode = 1) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof PullError, `expected a PullError, got ${String(error)}`);
    assert.match(error.message, message);
    assert.equal(error.exitCode, exitCode, error.message);
    return true;
  });
}

describe('sources', () => {
  test('hf: maps to the resolve URL, with a revision and an endpoint override', () => {
    const plain = parseSource(
      'hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf',
      {},
    );
    assert.equal(
      plain.url.href,
      'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf',
    );
    assert.equal(plain.fileName, 'qwen2.5-0.5b-instruct-q4_k_m.gguf');
    assert.deepEqual(plain.hf, {
      repo: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF',
      path: 'qwen2.5-0.5b-instruct-q4_k_m.gguf',
      revision: 'main',
    });
    const nested = parseSource('hf:o/r/sub dir/m.gguf@v1.0', {});
    assert.equal(nested.url.href, 'https://huggingface.co/o/r/resolve/v1.0/sub%20dir/m.gguf');
    const pr = parseSource('hf:o/r/m.gguf@refs/pr/1', {});
    assert.equal(pr.url.pathname, '/o/r/resolve/refs%2Fpr%2F1/m.gguf');
    const mirror = parseSource('hf:o/r/m.gguf', {
      PALISADE_HF_ENDPOINT: 'http://127.0.0.1:9/mirror/',
    });
    assert.equal(mirror.url.href, 'http://127.0.0.1:9/mirror/o/r/resolve/main/m.gguf');
    const standard = parseSource('hf:o/r/m.gguf', { HF_ENDPOINT: 'https://hf-mirror.example' });
    assert.equal(standard.url.origin, 'https://hf-mirror.example');
  });

  test('malformed sources are usage errors', () => {
    for (const spec of [
      'hf:',
      'hf:owner',
      'hf:owner/repo',
      'hf:../repo/m.gguf',
      'hf:o/r/../m.gguf',
      'hf:o/r//m.gguf',
      'hf:o/r/m.gguf@../x',
      'ftp://example.com/m.gguf',
      'file:///etc/passwd',
      'not a url',
      'http://user:pass@example.com/m.gguf',
    ]) {
      assert.throws(
        () => parseSource(spec, {}),
        (error: unknown) => error instanceof PullError && error.exitCode === 2,
        spec,
      );
    }
  });

  test('a URL whose name escapes the folder, or is not .gguf, is refused before any request', async () => {
    const { url, seen } = await server({});
    const home = newHome();
    for (const path of ['/%2e%2e%2fx.gguf', '/a%2Fb.gguf', '/x%00.gguf', '/..%5cx.gguf']) {
      await pullFails(pullModel({ home, source: `${url}${path}` }), /not allowed/, 2);
    }
    await pullFails(pullModel({ home, source: `${url}/model.bin` }), /does not end in \.gguf/, 2);
    for (const name of ['../x', 'a/b', '/abs', 'x\0y', '..']) {
      await pullFails(pullModel({ home, source: `${url}/m.gguf`, name }), /not allowed/, 2);
    }
    assert.equal(seen.length, 0);
    assert.deepEqual(modelsOf(home), []);
  });

  test('shaFromEtag accepts only a 64-hex SHA-256', () => {
    assert.equal(shaFromEtag(`"${MODEL_SHA}"`), MODEL_SHA);
    assert.equal(shaFromEtag(`W/"${MODEL_SHA.toUpperCase()}"`), MODEL_SHA);
    assert.equal(shaFromEtag('"abc123"'), undefined);
    assert.equal(shaFromEtag(undefined), undefined);
  });
});

describe('progress', () => {
  test('without a terminal: a parsable line at most once a second, and one at 100%', () => {
    let clock = 0;
    const lines: string[] = [];
    const print = createProgressPrinter(
      { write: (t) => lines.push(t) },
      { now: () => clock, tty: false },
    );
    const total = 29_200_000;
    print({ bytes: 0, total, resumedFrom: 0, done: false });
    clock = 500;
    print({ bytes: 2_000_000, total, resumedFrom: 0, done: false });
    clock = 1000;
    print({ bytes: 5_100_000, total, resumedFrom: 0, done: false });
    clock = 1900;
    print({ bytes: 9_000_000, total, resumedFrom: 0, done: false });
    clock = 2400;
    print({ bytes: 12_300_000, total, resumedFrom: 0, done: false });
    clock = 2500;
    print({ bytes: total, total, resumedFrom: 0, done: true });
    print({ bytes: total, total, resumedFrom: 0, done: true });
    assert.deepEqual(lines, [
      'progress: 0.0% 0 B of 29.2 MB\n',
      'progress: 17.5% 5.1 MB of 29.2 MB, 5.1 MB/s\n',
      'progress: 42.1% 12.3 MB of 29.2 MB, 5.1 MB/s\n',
      'progress: 100.0% 29.2 MB of 29.2 MB, 11.7 MB/s\n',
    ]);
    const jobs = /^progress:?\s+(\d{1,3}(?:\.\d+)?)%/i;
    assert.deepEqual(
      lines.map((l) => jobs.exec(l)?.[1]),
      ['0.0', '17.5', '42.1', '100.0'],
    );
  });

  test('unknown length prints bytes only; speed counts only this run, not resumed bytes', () => {
    let clock = 0;
    const lines: string[] = [];
    const print = createProgressPrinter(
      { write: (t) => lines.push(t) },
      { now: () => clock, tty: false },
    );
    print({ bytes: 1_000_000, resumedFrom: 1_000_000, done: false });
    clock = 2000;
    print({ bytes: 3_000_000, resumedFrom: 1_000_000, done: false });
    assert.deepEqual(lines, ['progress: 1.0 MB\n', 'progress: 3.0 MB, 1.0 MB/s\n']);
  });

  test('on a terminal: one line redrawn in place with a bar and ETA, ended by a newline', () => {
    let clock = 0;
    let out = '';
    const print = createProgressPrinter(
      { write: (t) => (out += t), columns: 100 },
      { now: () => clock, tty: true },
    );
    print({ bytes: 0, total: 10_000_000, resumedFrom: 0, done: false });
    clock = 1000;
    print({ bytes: 5_000_000, total: 10_000_000, resumedFrom: 0, done: false });
    clock = 2000;
    print({ bytes: 10_000_000, total: 10_000_000, resumedFrom: 0, done: true });
    // Each frame starts with a carriage return and ends by clearing the rest of the line.
    const frames = out
      .split('\r')
      .filter(Boolean)
      .map((frame) => frame.replace('\u001b[K', '<clear>'));
    assert.equal(frames.length, 3);
    assert.equal(
      frames[1],
      `[${'#'.repeat(20)}${'.'.repeat(20)}]  50.0%  5.0 MB / 10.0 MB  5.0 MB/s  ETA 0:01<clear>`,
    );
    assert.match(frames[2] as string, /100\.0%.*<clear>\n$/);
    assert.ok(!out.slice(0, -1).includes('\n'), 'only the last frame ends the line');
  });

  test('formatBytes uses decimal units', () => {
    assert.deepEqual([0, 999, 1000, 12_345_678, 29_200_000_000].map(formatBytes), [
      '0 B',
      '999 B',
      '1.0 kB',
      '12.3 MB',
      '29.2 GB',
    ]);
  });
});

describe('pullModel', () => {
  test('downloads a GGUF, reports progress, and renames it into place (0600)', async () => {
    const { url } = await server({ '/models/tiny-q8.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    const progress: PullProgress[] = [];
    const result = await pullModel({
      home,
      source: `${url}/models/tiny-q8.gguf`,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(result.name, 'tiny-q8');
    assert.equal(result.path, join(home, 'models', 'tiny-q8.gguf'));
    assert.equal(result.sha256, MODEL_SHA);
    assert.equal(result.verified, undefined);
    assert.equal(result.resumedFrom, 0);
    assert.equal(result.info.architecture, 'llama');
    assert.ok(readFileSync(result.path).equals(MODEL));
    assert.equal(statSync(result.path).mode & 0o777, 0o600);
    assert.equal(statSync(join(home, 'models')).mode & 0o777, 0o700);
    assert.deepEqual(modelsOf(home), ['tiny-q8.gguf']);

    assert.ok(progress.length >= 3, 'a start, some chunks, and the end');
    assert.ok(progress.every((p) => p.total === MODEL.length));
    assert.ok(
      progress.every((p, i) => i === 0 || p.bytes >= (progress[i - 1] as PullProgress).bytes),
    );
    assert.deepEqual(progress.at(-1), {
      bytes: MODEL.length,
      total: MODEL.length,
      resumedFrom: 0,
      done: true,
    });
    assert.equal(progress.filter((p) => p.done).length, 1);
  });

  test('unknown length: progress has no total until the end', async () => {
    const { url } = await server({ '/m.gguf': serveFile({ body: MODEL, chunked: true }) });
    const progress: PullProgress[] = [];
    const result = await pullModel({
      home: newHome(),
      source: `${url}/m.gguf`,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(result.size, MODEL.length);
    assert.ok(progress.slice(0, -1).every((p) => p.total === undefined));
    assert.equal(progress.at(-1)?.total, MODEL.length);
  });

  test('a cut connection leaves only the .part, and the next pull resumes it with Range', async () => {
    const cutAfter = 150_000;
    const files = await server({ '/m.gguf': serveFile({ body: MODEL, cutAfter }) });
    const home = newHome();
    const source = `${files.url}/m.gguf`;
    await pullFails(
      pullModel({ home, source }),
      /interrupted at .*run the same command again to resume/,
    );
    assert.deepEqual(modelsOf(home), ['m.gguf.part', 'm.gguf.part.json']);
    const partSize = statSync(join(home, 'models', 'm.gguf.part')).size;
    assert.ok(partSize > 0 && partSize <= cutAfter, `part holds ${partSize} bytes`);
    const sidecar = JSON.parse(readFileSync(join(home, 'models', 'm.gguf.part.json'), 'utf8'));
    assert.equal(sidecar.url, source);
    assert.equal(sidecar.total, MODEL.length);
    assert.equal(statSync(join(home, 'models', 'm.gguf.part')).mode & 0o777, 0o600);

    const progress: PullProgress[] = [];
    const result = await pullModel({
      home,
      source,
      sha256: MODEL_SHA,
      onProgress: (p) => progress.push(p),
    });
    assert.equal(result.resumedFrom, partSize);
    assert.equal(result.verified, 'flag', 'the hash covers the resumed bytes too');
    assert.ok(readFileSync(result.path).equals(MODEL));
    assert.deepEqual(modelsOf(home), ['m.gguf']);
    const [, second] = files.requests('/m.gguf');
    assert.equal(second?.headers.range, `bytes=${partSize}-`);
    assert.equal(second?.headers['if-range'], sidecar.etag);
    assert.equal(progress[0]?.bytes, partSize);
    assert.equal(progress[0]?.resumedFrom, partSize);
  });

  test('a server that ignores Range (200) restarts from zero and still gets the exact bytes', async () => {
    const files = await server({
      '/m.gguf': serveFile({ body: MODEL, cutAfter: 100_000, ignoreRange: true }),
    });
    const home = newHome();
    await pullFails(pullModel({ home, source: `${files.url}/m.gguf` }), /interrupted/);
    const notices: string[] = [];
    const result = await pullModel({
      home,
      source: `${files.url}/m.gguf`,
      onNotice: (t) => notices.push(t),
    });
    assert.equal(result.resumedFrom, 0);
    assert.equal(result.sha256, MODEL_SHA);
    assert.ok(readFileSync(result.path).equals(MODEL));
    assert.ok(files.requests('/m.gguf')[1]?.headers.range, 'a resume was asked for');
    assert.match(notices.join('\n'), /starting again/);
  });

  test('a file that changed on the server (If-Range fails) restarts with the new file', async () => {
    let body = MODEL;
    const live: Handler = (req, res, count) =>
      serveFile({ body, cutAfter: count === 1 ? 100_000 : undefined })(req, res, count);
    const files = await server({ '/m.gguf': live });
    const home = newHome();
    await pullFails(pullModel({ home, source: `${files.url}/m.gguf` }), /interrupted/);
    body = OTHER;
    const result = await pullModel({ home, source: `${files.url}/m.gguf` });
    assert.equal(result.resumedFrom, 0);
    assert.ok(readFileSync(result.path).equals(OTHER));
  });

  test('a part that is already complete (416) is downloaded again rather than trusted', async () => {
    const files = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    const first = await pullModel({ home, source: `${files.url}/m.gguf`, name: 'first' });
    // Put a complete part with a sidecar in place, as if the process died before the rename.
    const dir = join(home, 'models');
    copyFileSync(first.path, join(dir, 'm.gguf.part'));
    const etag = `"${createHash('md5').update(MODEL).digest('hex')}"`;
    writeFileSync(
      join(dir, 'm.gguf.part.json'),
      JSON.stringify({ url: `${files.url}/m.gguf`, etag }),
    );
    const result = await pullModel({ home, source: `${files.url}/m.gguf` });
    assert.ok(readFileSync(result.path).equals(MODEL));
    const [, asked, again] = files.requests('/m.gguf');
    assert.equal(asked?.headers.range, `bytes=${MODEL.length}-`);
    assert.equal(again?.headers.range, undefined);
  });

  test('a SHA-256 mismatch deletes the download and names both hashes', async () => {
    const { url } = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    const wrong = 'ab'.repeat(32);
    await pullFails(
      pullModel({ home, source: `${url}/m.gguf`, sha256: wrong }),
      new RegExp(`SHA-256 mismatch.*expected ${wrong}, got ${MODEL_SHA}`),
    );
    assert.deepEqual(modelsOf(home), []);
    await pullFails(
      pullModel({ home, source: `${url}/m.gguf`, sha256: 'xyz' }),
      /64 hexadecimal/,
      2,
    );
    const ok = await pullModel({ home, source: `${url}/m.gguf`, sha256: MODEL_SHA.toUpperCase() });
    assert.equal(ok.verified, 'flag');
  });

  test('a file that is not GGUF is refused and nothing is left behind', async () => {
    const html = Buffer.from('<!doctype html><title>Sign in</title>'.repeat(50));
    const { url } = await server({ '/m.gguf': serveFile({ body: html }) });
    const home = newHome();
    await pullFails(
      pullModel({ home, source: `${url}/m.gguf` }),
      /not a valid GGUF model.*nothing was saved/,
    );
    assert.deepEqual(modelsOf(home), []);
  });

  test('an existing model is kept unless --force', async () => {
    const { url } = await server({ '/m.gguf': serveFile({ body: OTHER }) });
    const home = newHome();
    const dir = join(home, 'models');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'm.gguf'), MODEL);
    await pullFails(pullModel({ home, source: `${url}/m.gguf` }), /already exists; pass --force/);
    assert.ok(readFileSync(join(dir, 'm.gguf')).equals(MODEL));
    const result = await pullModel({ home, source: `${url}/m.gguf`, force: true });
    assert.ok(readFileSync(result.path).equals(OTHER));
    const renamed = await pullModel({ home, source: `${url}/m.gguf`, name: 'copy.gguf' });
    assert.equal(renamed.path, join(dir, 'copy.gguf'));
  });

  test('HTTP errors name the fix', async () => {
    const { url } = await server({
      '/gone.gguf': (_q, res) => res.writeHead(404).end(),
      '/private.gguf': (_q, res) => res.writeHead(403).end(),
      '/busy.gguf': (_q, res) => res.writeHead(503).end(),
      '/slow.gguf': (_q, res) => res.writeHead(429, { 'retry-after': '30' }).end(),
      '/o/r/resolve/main/missing.gguf': (_q, res) =>
        res.writeHead(404, { 'x-error-message': 'Entry not found' }).end(),
      '/o/gated/resolve/main/m.gguf': (_q, res) => res.writeHead(401).end(),
    });
    const home = newHome();
    const env = { PALISADE_HF_ENDPOINT: url };
    await pullFails(
      pullModel({ home, source: `${url}/gone.gguf` }),
      /not found \(HTTP 404\).*check the URL/,
    );
    await pullFails(
      pullModel({ home, source: `${url}/private.gguf` }),
      /access denied \(HTTP 403\)/,
    );
    await pullFails(pullModel({ home, source: `${url}/busy.gguf` }), /HTTP 503.*try again later/);
    await pullFails(pullModel({ home, source: `${url}/slow.gguf` }), /rate limited.*in 30 s/);
    await pullFails(
      pullModel({ home, env, source: 'hf:o/r/missing.gguf' }),
      /not found \(HTTP 404\): hf:o\/r \(Entry not found\); check the repo, the file path "missing.gguf"/,
    );
    await pullFails(
      pullModel({ home, env, source: 'hf:o/gated/m.gguf' }),
      /HTTP 401.*set HF_TOKEN/,
    );
    await pullFails(
      pullModel({ home, env: { ...env, HF_TOKEN: 'hf_x' }, source: 'hf:o/gated/m.gguf' }),
      /HF_TOKEN was sent and refused/,
    );
    await pullFails(pullModel({ home, source: 'http://127.0.0.1:1/m.gguf' }), /ECONNREFUSED/);
    assert.deepEqual(modelsOf(home), []);
  });

  test('a second pull of the same name is refused while one runs; a stale lock is taken over', async () => {
    const { url } = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    const dir = join(home, 'models');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'm.gguf.part.lock'), `${process.pid}\n`);
    await pullFails(
      pullModel({ home, source: `${url}/m.gguf` }),
      new RegExp(`another pull of "m" is running \\(pid ${process.pid}\\)`),
    );
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(dir, 'm.gguf.part.lock'), `${gone}\n`);
    const result = await pullModel({ home, source: `${url}/m.gguf` });
    assert.ok(readFileSync(result.path).equals(MODEL));
    assert.deepEqual(modelsOf(home), ['m.gguf'], 'the lock goes when the pull ends');

    const slow = await server({ '/slow.gguf': serveFile({ body: MODEL, cutAfter: 1000 }) });
    // Started together: whichever takes the lock first runs (and is cut), the other is refused.
    const outcomes = await Promise.allSettled([
      pullModel({ home, source: `${slow.url}/slow.gguf` }),
      pullModel({ home, source: `${slow.url}/slow.gguf` }),
    ]);
    const messages = outcomes
      .map((o) => (o.status === 'rejected' ? String((o.reason as Error).message) : 'pulled'))
      .sort();
    assert.equal(messages.length, 2);
    assert.match(messages[0] as string, /^another pull of "slow" is running/);
    assert.match(messages[1] as string, /^download interrupted/);
    assert.equal(slow.seen.length, 1, 'only one of them reached the server');
  });

  test('a disk problem where the part goes is reported, not thrown raw', async () => {
    const { url } = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    mkdirSync(join(home, 'models', 'm.gguf.part'), { recursive: true });
    await pullFails(
      pullModel({ home, source: `${url}/m.gguf` }),
      /cannot reuse or remove the partial download m\.gguf\.part/,
    );
  });
});

describe('redirects, tokens and the SSRF guard', () => {
  test('hf: follows the redirect to the CDN, checks X-Linked-Etag, keeps HF_TOKEN off other hosts', async () => {
    const cdn = await server({ '/blob/abc': serveFile({ body: MODEL }) });
    const hub = await server({
      '/owner/repo/resolve/main/tiny.gguf': redirect(
        `${cdn.url}/blob/abc?X-Amz-Signature=s3cr3t`,
        302,
        {
          'x-linked-etag': `"${MODEL_SHA}"`,
          'x-linked-size': String(MODEL.length),
        },
      ),
      '/owner/repo/resolve/main/bad.gguf': redirect(`${cdn.url}/blob/abc`, 302, {
        'x-linked-etag': `"${'0'.repeat(64)}"`,
      }),
    });
    const home = newHome();
    const env = { PALISADE_HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_secret_token' };
    const result = await pullModel({ home, env, source: 'hf:owner/repo/tiny.gguf' });
    assert.equal(result.verified, 'etag');
    assert.ok(readFileSync(result.path).equals(MODEL));
    assert.equal(hub.seen[0]?.headers.authorization, 'Bearer hf_secret_token');
    assert.equal(cdn.seen[0]?.headers.authorization, undefined, 'the token stays on the hub');

    await pullFails(
      pullModel({ home, env, source: 'hf:owner/repo/bad.gguf' }),
      new RegExp(`expected ${'0'.repeat(64)}, got ${MODEL_SHA}`),
    );
    assert.deepEqual(modelsOf(home), ['tiny.gguf']);

    // A plain URL to another host never gets the token.
    await pullModel({ home, env, source: `${cdn.url}/blob/abc`, name: 'direct' });
    assert.equal(cdn.seen.at(-1)?.headers.authorization, undefined);
  });

  test('a redirect back to the hub after leaving it still carries no token', async () => {
    const hubRoutes: Record<string, Handler> = {};
    const hub = await server(hubRoutes);
    const away = await server({ '/bounce': redirect(`${hub.url}/final.gguf`) });
    hubRoutes['/o/r/resolve/main/m.gguf'] = redirect(`${away.url}/bounce`);
    hubRoutes['/final.gguf'] = serveFile({ body: MODEL });
    const env = { PALISADE_HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_secret_token' };
    await pullModel({ home: newHome(), env, source: 'hf:o/r/m.gguf' });
    assert.equal(
      hub.requests('/o/r/resolve/main/m.gguf')[0]?.headers.authorization,
      'Bearer hf_secret_token',
    );
    assert.equal(away.seen[0]?.headers.authorization, undefined);
    assert.equal(hub.requests('/final.gguf')[0]?.headers.authorization, undefined);
  });

  test('at most 5 redirects are followed', async () => {
    const routes: Record<string, Handler> = {};
    const files = await server(routes);
    for (let i = 0; i < 6; i++) routes[`/r${i}`] = redirect(`/r${i + 1}`, i % 2 ? 301 : 307);
    routes['/r5'] = redirect('/m.gguf');
    routes['/r6'] = redirect('/m.gguf');
    routes['/m.gguf'] = serveFile({ body: MODEL });
    const result = await pullModel({ home: newHome(), source: `${files.url}/r1`, name: 'five' });
    assert.ok(readFileSync(result.path).equals(MODEL));
    await pullFails(
      pullModel({ home: newHome(), source: `${files.url}/r0`, name: 'six' }),
      /too many redirects \(more than 5\)/,
    );
  });

  test('redirects to metadata addresses, other schemes or blocked names are refused', async () => {
    const { url } = await server({
      '/meta.gguf': redirect('http://169.254.169.254/latest/meta-data/m.gguf'),
      '/mapped.gguf': redirect('http://[::ffff:a9fe:a9fe]/m.gguf'),
      '/google.gguf': redirect('http://metadata.google.internal/m.gguf'),
      '/ftp.gguf': redirect('ftp://127.0.0.1/m.gguf'),
      '/file.gguf': redirect('file:///etc/passwd'),
      '/nowhere.gguf': (_q, res) => res.writeHead(302).end(),
    });
    const home = newHome();
    await pullFails(
      pullModel({ home, source: `${url}/meta.gguf` }),
      /download refused: 169\.254\.169\.254 is a cloud metadata address/,
    );
    await pullFails(
      pullModel({ home, source: `${url}/mapped.gguf` }),
      /download refused: .*cloud metadata/,
    );
    await pullFails(
      pullModel({ home, source: `${url}/google.gguf` }),
      /download refused: .*metadata name/,
    );
    await pullFails(
      pullModel({ home, source: `${url}/ftp.gguf` }),
      /download refused: scheme ftp:/,
    );
    await pullFails(
      pullModel({ home, source: `${url}/file.gguf` }),
      /download refused: scheme file:/,
    );
    await pullFails(pullModel({ home, source: `${url}/nowhere.gguf` }), /without a Location/);
    await pullFails(
      pullModel({ home, source: 'http://169.254.169.254/m.gguf' }),
      /cloud metadata/,
      2,
    );
    assert.deepEqual(modelsOf(home), []);
  });

  test('every connection resolves through the guard: a name resolving to metadata is refused', async () => {
    const files = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const answers: Record<string, string> = {
      'models.test': '127.0.0.1',
      'rebind.test': '169.254.169.254',
    };
    const asked: string[] = [];
    const lookup = ((
      hostname: string,
      options: { all?: boolean },
      callback: (...args: unknown[]) => void,
    ) => {
      asked.push(hostname);
      const address = answers[hostname];
      if (address === undefined)
        return callback(Object.assign(new Error('not found'), { code: 'ENOTFOUND' }));
      if (options.all) callback(null, [{ address, family: 4 }] satisfies LookupAddress[]);
      else callback(null, address, 4);
    }) as unknown as LookupFunction;
    const home = newHome();
    const ok = await pullModel({ home, lookup, source: `http://models.test:${files.port}/m.gguf` });
    assert.ok(readFileSync(ok.path).equals(MODEL));
    await pullFails(
      pullModel({
        home,
        lookup,
        source: `http://rebind.test:${files.port}/m.gguf`,
        name: 'rebind',
      }),
      /download refused: rebind\.test resolves to 169\.254\.169\.254, a cloud metadata address/,
    );
    await pullFails(
      pullModel({
        home,
        lookup,
        source: `http://nowhere.test:${files.port}/m.gguf`,
        name: 'nowhere',
      }),
      /cannot resolve nowhere\.test \(ENOTFOUND\)/,
    );
    assert.deepEqual(asked, ['models.test', 'rebind.test', 'nowhere.test']);
  });
});

type Framing = 'length' | 'chunked' | 'eof';

/**
 * A raw HTTP/1.1 server that answers each request in one write and then closes the connection
 * (FIN), the way small file servers do: `Connection: close` with a Content-Length, a chunked
 * body, or a body that ends with the connection. `truncate` sends only that many body bytes.
 */
async function closingServer(framing: Framing, body: Buffer, truncate?: number) {
  const server = createTcpServer((socket) => {
    socket.on('error', () => undefined);
    socket.once('data', () => {
      const sent = truncate === undefined ? body : body.subarray(0, truncate);
      const head = [
        'HTTP/1.1 200 OK',
        'Content-Type: application/octet-stream',
        'Connection: close',
      ];
      let payload = sent;
      if (framing === 'length') head.push(`Content-Length: ${body.length}`);
      if (framing === 'chunked') {
        head.push('Transfer-Encoding: chunked');
        payload = Buffer.concat([
          Buffer.from(`${sent.length.toString(16)}\r\n`),
          sent,
          Buffer.from(truncate === undefined ? '\r\n0\r\n\r\n' : ''),
        ]);
      }
      socket.end(Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), payload]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const closing = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  servers.push(closing);
  return closing;
}

describe('servers that close the connection after each reply', () => {
  for (const framing of ['length', 'chunked', 'eof'] as const) {
    test(`20 pulls in a row succeed (${framing === 'eof' ? 'body ends with the connection' : framing})`, async () => {
      const { url } = await closingServer(framing, MODEL);
      for (let i = 0; i < 20; i++) {
        const home = newHome();
        const progress: PullProgress[] = [];
        // Half with a progress callback, half without (the CLI's --quiet).
        const result = await pullModel({
          home,
          source: `${url}/m.gguf`,
          ...(i % 2 === 0 ? { onProgress: (p: PullProgress) => progress.push(p) } : {}),
        });
        assert.equal(result.sha256, MODEL_SHA, `pull ${i}`);
        assert.ok(readFileSync(result.path).equals(MODEL));
        assert.deepEqual(modelsOf(home), ['m.gguf']);
        if (i % 2 === 0) assert.equal(progress.at(-1)?.done, true);
      }
    });
  }

  test('a body cut short by the closing server is an interruption, and resumable', async () => {
    for (const framing of ['length', 'chunked'] as const) {
      const { url } = await closingServer(framing, MODEL, 100_000);
      const home = newHome();
      await pullFails(
        pullModel({ home, source: `${url}/m.gguf` }),
        /download interrupted at .*run the same command again to resume/,
      );
      assert.deepEqual(modelsOf(home), ['m.gguf.part', 'm.gguf.part.json'], framing);
    }
  });
});

describe('timeouts and cancelling', () => {
  test('a server that stalls before the headers or inside the body is given up on', async () => {
    const files = await server({
      '/silent.gguf': () => undefined,
      '/stalls.gguf': (_q, res) => {
        res.writeHead(200, { 'content-length': String(MODEL.length) });
        res.write(MODEL.subarray(0, 10_000));
      },
    });
    const home = newHome();
    await pullFails(
      pullModel({ home, source: `${files.url}/silent.gguf`, timeoutMs: 200 }),
      /did not answer in time \(ETIMEDOUT\)/,
    );
    await pullFails(
      pullModel({ home, source: `${files.url}/stalls.gguf`, timeoutMs: 200 }),
      /download interrupted at 10\.0 kB of [\d.]+ kB: 127\.0\.0\.1:\d+ stopped sending; run the same command again to resume/,
    );
    assert.deepEqual(modelsOf(home), ['stalls.gguf.part', 'stalls.gguf.part.json']);
  });

  test('an abort signal cancels a download in progress', async () => {
    const files = await server({ '/slow.gguf': serveFile({ body: MODEL, cutAfter: 10_000 }) });
    const stop = new AbortController();
    await pullFails(
      pullModel({
        home: newHome(),
        source: `${files.url}/slow.gguf`,
        signal: stop.signal,
        onProgress: (p) => {
          if (p.bytes > 0) stop.abort();
        },
      }),
      /download interrupted at .*: cancelled/,
    );
    await pullFails(
      pullModel({ home: newHome(), source: `${files.url}/slow.gguf`, signal: stop.signal }),
      /download cancelled/,
    );
  });
});

describe('size limit and free space', () => {
  test('the default limit is --max-size 256gb in the settings syntax', () => {
    assert.equal(DEFAULT_MAX_BYTES, parseBytes('256gb'));
  });

  test('a Content-Length over maxBytes is refused before the body is read; nothing is kept', async () => {
    const files = await server({ '/m.gguf': serveFile({ body: MODEL }) });
    const home = newHome();
    await pullFails(
      pullModel({ home, source: `${files.url}/m.gguf`, maxBytes: 100_000 }),
      new RegExp(
        `m\\.gguf is ${formatBytes(MODEL.length).replace('.', '\\.')}, over the size limit of 100\\.0 kB; ` +
          'nothing was kept\\. Pass --max-size SIZE',
      ),
    );
    assert.deepEqual(modelsOf(home), []);
    const ok = await pullModel({ home, source: `${files.url}/m.gguf`, maxBytes: MODEL.length });
    assert.ok(readFileSync(ok.path).equals(MODEL), 'a file exactly at the limit is accepted');
  });

  test('a body of unknown length is stopped at maxBytes and the part deleted', async () => {
    const files = await server({ '/m.gguf': serveFile({ body: MODEL, chunked: true }) });
    const home = newHome();
    const progress: PullProgress[] = [];
    await pullFails(
      pullModel({
        home,
        source: `${files.url}/m.gguf`,
        maxBytes: 200_000,
        onProgress: (p) => progress.push(p),
      }),
      /m\.gguf is larger than the size limit of 200\.0 kB \(the server did not say its size\); the download was deleted/,
    );
    assert.deepEqual(modelsOf(home), []);
    assert.ok(progress.every((p) => p.bytes <= 200_000));
  });

  test('a resumed download whose total is over maxBytes is refused and the part deleted', async () => {
    const files = await server({ '/m.gguf': serveFile({ body: MODEL, cutAfter: 100_000 }) });
    const home = newHome();
    await pullFails(pullModel({ home, source: `${files.url}/m.gguf` }), /interrupted/);
    assert.deepEqual(modelsOf(home), ['m.gguf.part', 'm.gguf.part.json']);
    await pullFails(
      pullModel({ home, source: `${files.url}/m.gguf`, maxBytes: 300_000 }),
      /over the size limit of 300\.0 kB; nothing was kept/,
    );
    assert.equal(files.requests('/m.gguf')[1]?.headers.range?.startsWith('bytes='), true);
    assert.deepEqual(modelsOf(home), []);
  });

  test('a limit that is not a positive byte count is a usage error', async () => {
    for (const maxBytes of [0, -1, 1.5, Number.NaN]) {
      await pullFails(
        pullModel({ home: newHome(), source: 'http://127.0.0.1:1/m.gguf', maxBytes }),
        /--max-size/,
        2,
      );
    }
  });

  test('a file that does not fit on the disk is refused with both numbers; a part is kept', async () => {
    const huge = 10 ** 15; // 1 PB: more than this disk has free.
    const claims: Handler = (req, res) => {
      const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
      const etag = `"${createHash('md5').update(MODEL).digest('hex')}"`;
      if (range) {
        res.writeHead(206, {
          etag,
          'content-range': `bytes ${range[1]}-${huge - 1}/${huge}`,
          'content-length': String(huge - Number(range[1])),
        });
      } else {
        res.writeHead(200, { etag, 'content-length': String(huge) });
      }
      res.write(MODEL.subarray(0, 1000));
    };
    const files = await server({ '/big.gguf': claims });
    const home = newHome();
    const noRoom =
      /not enough free space in the models folder: 1\.0 PB still to download, [\d.]+ [kMGT]?B free \([\d.]+ [kMG]?B is kept spare\); free some space and run the same command again/;
    await pullFails(
      pullModel({ home, source: `${files.url}/big.gguf`, maxBytes: 2 * huge }),
      noRoom,
    );
    assert.deepEqual(modelsOf(home), []);

    const dir = join(home, 'models');
    writeFileSync(join(dir, 'big.gguf.part'), MODEL.subarray(0, 1000));
    const etag = `"${createHash('md5').update(MODEL).digest('hex')}"`;
    writeFileSync(
      join(dir, 'big.gguf.part.json'),
      JSON.stringify({ url: `${files.url}/big.gguf`, etag, total: huge }),
    );
    await pullFails(
      pullModel({ home, source: `${files.url}/big.gguf`, maxBytes: 2 * huge }),
      /not enough free space .* run the same command again to resume/,
    );
    assert.deepEqual(modelsOf(home), ['big.gguf.part', 'big.gguf.part.json'], 'the part stays');
  });
});

describe('downgrades and secrets in URLs', () => {
  test('a redirect from https to plain http is refused unless the source was http', () => {
    const https = new URL('https://hub.example/m.gguf');
    const http = new URL('http://cdn.example/blob');
    assert.match(
      redirectDowngrade(https, https, http) ?? '',
      /^hub\.example redirected from https to plain http \(cdn\.example\); the download was refused/,
    );
    assert.equal(redirectDowngrade(https, https, new URL('https://cdn.example/b')), undefined);
    const plain = new URL('http://files.example/m.gguf');
    assert.equal(redirectDowngrade(plain, new URL('https://x.example/a'), http), undefined);
    assert.equal(redirectDowngrade(plain, plain, http), undefined);
  });

  test('no message, notice or progress shows the query string of a signed URL', async () => {
    const secret = 'X-Amz-Signature=s3cr3t&token=t0ps3cr3t';
    const html = Buffer.from('<!doctype html><title>Sign in</title>'.repeat(50));
    const routes: Record<string, Handler> = {
      '/missing.gguf': (_q, res) => res.writeHead(404).end(),
      // A server that echoes the request URL in its error header.
      '/echo.gguf': (req, res) => res.writeHead(500, { 'x-error-message': req.url ?? '' }).end(),
      '/login.gguf': serveFile({ body: html }),
      '/cut.gguf': serveFile({ body: MODEL, cutAfter: 50_000, cuts: 99 }),
      '/sum.gguf': serveFile({ body: MODEL }),
      '/big.gguf': serveFile({ body: MODEL }),
      '/meta.gguf': redirect(`http://169.254.169.254/m.gguf?${secret}`),
      '/bounce.gguf': redirect(`/missing.gguf?cdn=${secret}`),
      '/bad.gguf': redirect(`http://[::1/m.gguf?${secret}`),
    };
    const files = await server(routes);
    const home = newHome();
    const said: string[] = [];
    const cases: Array<[string, Partial<Parameters<typeof pullModel>[0]>]> = [
      ['missing', {}],
      ['echo', {}],
      ['login', {}],
      ['cut', {}],
      ['cut', {}],
      ['sum', { sha256: 'ab'.repeat(32) }],
      ['big', { maxBytes: 1000 }],
      ['meta', {}],
      ['bounce', {}],
      ['bad', {}],
    ];
    for (const [name, extra] of cases) {
      await assert.rejects(
        pullModel({
          home,
          source: `${files.url}/${name}.gguf?${secret}`,
          onNotice: (t) => said.push(t),
          onProgress: (p) => said.push(JSON.stringify(p)),
          ...extra,
        }),
        (error: unknown) => {
          assert.ok(error instanceof PullError, String(error));
          said.push(error.message);
          return true;
        },
      );
    }
    await assert.rejects(
      pullModel({ home, source: `http://127.0.0.1:1/m.gguf?${secret}` }),
      (error: Error) => (said.push(error.message), true),
    );
    const all = said.join('\n');
    assert.match(all, /resuming at/, 'the second cut pull resumed');
    assert.match(
      all,
      /\(HTTP 500\) \(\/echo\.gguf\)/,
      'the echoed header is kept, minus the query',
    );
    for (const word of ['s3cr3t', 't0ps3cr3t', 'X-Amz-Signature']) {
      assert.ok(!all.includes(word), `"${word}" shown in:\n${all}`);
    }
    // The sidecar (mode 0600) still records the whole URL, so the resume asks for the same file.
    const sidecar = join(home, 'models', 'cut.gguf.part.json');
    assert.equal(JSON.parse(readFileSync(sidecar, 'utf8')).url, `${files.url}/cut.gguf?${secret}`);
    assert.equal(statSync(sidecar).mode & 0o777, 0o600);
  });
});
