import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tinyGguf } from '../fixtures/gguf.js';
import { runCli, tempHome, type CliResult } from '../support/palisade.js';

const MODEL = tinyGguf({ seed: 3, contextLength: 384 });
const MODEL_SHA = createHash('sha256').update(MODEL).digest('hex');
const ETAG = `"${createHash('md5').update(MODEL).digest('hex')}"`;
const PROGRESS_LINE = /^progress: (\d{1,3}\.\d)% [\d.]+ k?M?B of [\d.]+ k?M?B(, [\d.]+ k?M?B\/s)?$/;

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Serves MODEL with Range/If-Range support; `cut` cuts the first response after that many bytes. */
function modelFile(options: { body?: Buffer; cut?: number } = {}): Handler {
  const body = options.body ?? MODEL;
  let cut = options.cut;
  return (req, res) => {
    const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
    const start = range && req.headers['if-range'] === ETAG ? Number(range[1]) : 0;
    const headers: Record<string, string> = {
      etag: ETAG,
      'content-length': String(body.length - start),
      'content-type': 'application/octet-stream',
    };
    if (start > 0) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (cut !== undefined) {
      res.write(body.subarray(start, start + cut));
      cut = undefined;
      setTimeout(() => res.socket?.destroy(), 200);
      return;
    }
    res.end(body.subarray(start));
  };
}

const requests: Array<{ path: string; headers: IncomingMessage['headers'] }> = [];
const routes: Record<string, Handler> = {};
const server = createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] as string;
  requests.push({ path, headers: req.headers });
  const handler = routes[path];
  if (handler) handler(req, res);
  else res.writeHead(404).end('not found');
});
let base = '';

before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

function cli(home: string, args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return runCli(['--home', home, 'models', ...args], {
    env: { HF_TOKEN: '', HF_ENDPOINT: '', PALISADE_HF_ENDPOINT: base, ...env },
  });
}

function files(home: string): string[] {
  const dir = join(home, 'models');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

function seen(path: string) {
  return requests.filter((r) => r.path === path);
}

describe('palisade models', () => {
  test('pull downloads a real GGUF with progress lines; list shows it; remove deletes it', async () => {
    routes['/files/tiny-chat.gguf'] = modelFile();
    const home = tempHome('palisade-cli-models-');
    const pulled = await cli(home, ['pull', `${base}/files/tiny-chat.gguf`]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const lines = pulled.stdout.trim().split('\n');
    const progress = lines.filter((l) => l.startsWith('progress'));
    assert.ok(progress.length >= 1, pulled.stdout);
    for (const line of progress) assert.match(line, PROGRESS_LINE);
    assert.match(progress.at(-1) as string, /^progress: 100\.0% /);
    assert.match(
      pulled.stdout,
      /pulled model "tiny-chat" \([\d.]+ kB, llama, context 384; SHA-256 [0-9a-f]{64}\)/,
    );
    assert.match(pulled.stdout, /serves it as model "tiny-chat" of upstream local/);
    const path = join(home, 'models', 'tiny-chat.gguf');
    assert.ok(readFileSync(path).equals(MODEL));
    assert.equal(statSync(join(home, 'models')).mode & 0o777, 0o700);
    assert.equal(statSync(path).mode & 0o777, 0o600);

    const table = await cli(home, ['list']);
    assert.equal(table.code, 0, table.stderr);
    const [head, row] = table.stdout.trim().split('\n');
    assert.match(head as string, /^NAME\s+SIZE\s+ARCH\s+CONTEXT\s+MODIFIED\s+STATUS$/);
    assert.match(
      row as string,
      /^tiny-chat\s+[\d.]+ kB\s+llama\s+384\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+ok$/,
    );

    const json = await cli(home, ['list', '--json']);
    const [listed] = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(
      { ...listed, modified: typeof listed?.modified },
      {
        name: 'tiny-chat',
        status: 'ok',
        size: MODEL.length,
        architecture: 'llama',
        context_length: 384,
        modified: 'string',
        path,
      },
    );

    const again = await cli(home, ['pull', `${base}/files/tiny-chat.gguf`, '--quiet']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists; pass --force/);
    const forced = await cli(home, ['pull', `${base}/files/tiny-chat.gguf`, '--quiet', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.doesNotMatch(forced.stdout, /progress/, '--quiet prints no progress');

    const removed = await cli(home, ['remove', 'tiny-chat']);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout, 'removed tiny-chat.gguf\n');
    assert.deepEqual(files(home), []);
    const missing = await cli(home, ['remove', 'tiny-chat']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no model named "tiny-chat".*palisade models list/);
    assert.equal((await cli(home, ['list'])).stdout, '(none)\n');
  });

  test('a download that is not GGUF is refused and nothing lands in the models folder', async () => {
    routes['/files/login.gguf'] = (_req, res) =>
      res
        .writeHead(200, { 'content-type': 'text/html' })
        .end('<!doctype html><p>Sign in</p>'.repeat(40));
    const home = tempHome('palisade-cli-models-');
    const result = await cli(home, ['pull', `${base}/files/login.gguf`]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^palisade: .*login\.gguf is not a valid GGUF model \(.*\); nothing was saved/,
    );
    assert.deepEqual(files(home), []);
  });

  test('a cut connection is resumed by the next pull with Range, and the bytes are exact', async () => {
    routes['/files/resume.gguf'] = modelFile({ cut: 200_000 });
    const home = tempHome('palisade-cli-models-');
    const source = `${base}/files/resume.gguf`;
    const first = await cli(home, ['pull', source, '--sha256', MODEL_SHA]);
    assert.equal(first.code, 1);
    assert.match(
      first.stderr,
      /download interrupted at [\d.]+ kB of [\d.]+ kB: .*run the same command again to resume/,
    );
    assert.deepEqual(files(home), ['resume.gguf.part', 'resume.gguf.part.json']);
    const part = statSync(join(home, 'models', 'resume.gguf.part')).size;

    const listed = await cli(home, ['list']);
    assert.match(
      listed.stdout,
      /^resume\s+[\d.]+ kB of [\d.]+ kB\s+-\s+-\s+\S+ \S+\s+partial download/m,
    );

    const second = await cli(home, ['pull', source, '--sha256', MODEL_SHA]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /resuming at [\d.]+ kB of [\d.]+ kB/);
    assert.match(second.stdout, /SHA-256 verified/);
    assert.deepEqual(files(home), ['resume.gguf']);
    assert.ok(readFileSync(join(home, 'models', 'resume.gguf')).equals(MODEL));
    const [asked1, asked2] = seen('/files/resume.gguf');
    assert.equal(asked1?.headers.range, undefined);
    assert.equal(asked2?.headers.range, `bytes=${part}-`);
    assert.equal(asked2?.headers['if-range'], ETAG);
  });

  test('a checksum mismatch exits 1 with both hashes and keeps nothing', async () => {
    routes['/files/sum.gguf'] = modelFile();
    const home = tempHome('palisade-cli-models-');
    const wrong = 'f'.repeat(64);
    const result = await cli(home, [
      'pull',
      `${base}/files/sum.gguf`,
      '--sha256',
      wrong,
      '--quiet',
    ]);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      new RegExp(`SHA-256 mismatch .*expected ${wrong}, got ${MODEL_SHA}`),
    );
    assert.deepEqual(files(home), []);
  });

  test('names that escape the models folder are refused with exit 2, before any request', async () => {
    const home = tempHome('palisade-cli-models-');
    const before = requests.length;
    for (const args of [
      ['pull', `${base}/files/x.gguf`, '--name', '../x'],
      ['pull', `${base}/files/x.gguf`, '--name', '/abs/x.gguf'],
      ['pull', `${base}/files/%2e%2e%2fx.gguf`],
      ['pull', `${base}/files/x.bin`],
      ['pull', 'gopher://example.com/x.gguf'],
      ['remove', '../x'],
      ['remove', 'a/b'],
      ['pull'],
    ]) {
      const result = await cli(home, args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /palisade: |error: /);
    }
    assert.equal(requests.length, before);
    assert.deepEqual(files(home), []);
  });

  test('hf: sources map to the hub (PALISADE_HF_ENDPOINT), verify the linked ETag and hint HF_TOKEN', async () => {
    routes['/cdn/blob'] = modelFile();
    routes['/acme/tiny-GGUF/resolve/v2/q8/tiny-q8.gguf'] = (_req, res) =>
      res
        .writeHead(302, {
          location: `${base.replace('127.0.0.1', 'localhost')}/cdn/blob?signature=abc`,
          'x-linked-etag': `"${MODEL_SHA}"`,
        })
        .end();
    routes['/acme/gated/resolve/main/m.gguf'] = (_req, res) => res.writeHead(401).end();
    const home = tempHome('palisade-cli-models-');
    const token = { HF_TOKEN: 'hf_test_token' };
    const pulled = await cli(
      home,
      ['pull', 'hf:acme/tiny-GGUF/q8/tiny-q8.gguf@v2', '--quiet'],
      token,
    );
    assert.equal(pulled.code, 0, pulled.stderr);
    assert.match(pulled.stdout, /pulled model "tiny-q8" .*SHA-256 verified against the Hub/);
    assert.equal(
      seen('/acme/tiny-GGUF/resolve/v2/q8/tiny-q8.gguf')[0]?.headers.authorization,
      'Bearer hf_test_token',
    );
    assert.equal(
      seen('/cdn/blob').at(-1)?.headers.authorization,
      undefined,
      'the token stays on the hub host',
    );

    const gated = await cli(home, ['pull', 'hf:acme/gated/m.gguf']);
    assert.equal(gated.code, 1);
    assert.match(gated.stderr, /access denied \(HTTP 401\) for hf:acme\/gated.*set HF_TOKEN/);
    const refused = await cli(home, ['pull', 'hf:acme/gated/m.gguf'], token);
    assert.match(refused.stderr, /HF_TOKEN was sent and refused/);

    const missing = await cli(home, ['pull', 'hf:acme/tiny-GGUF/nope.gguf']);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /not found \(HTTP 404\).*check the repo, the file path "nope\.gguf" and the revision "main"/,
    );
    assert.deepEqual(files(home), ['tiny-q8.gguf']);
  });

  test('a redirect to a cloud metadata address is refused', async () => {
    routes['/files/meta.gguf'] = (_req, res) =>
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    const home = tempHome('palisade-cli-models-');
    const result = await cli(home, ['pull', `${base}/files/meta.gguf`]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /download refused: 169\.254\.169\.254 is a cloud metadata address/);
    assert.deepEqual(files(home), []);
  });

  test('pulls from a server that closes the connection after each reply all succeed', async () => {
    // One write and a FIN per reply: what crashed undici 7 (nodejs/undici#5360).
    routes['/files/closing.gguf'] = (_req, res) =>
      res
        .writeHead(200, {
          connection: 'close',
          'content-length': String(MODEL.length),
          'content-type': 'application/octet-stream',
        })
        .end(MODEL);
    for (const quiet of [false, true, false, true]) {
      const home = tempHome('palisade-cli-models-');
      const args = ['pull', `${base}/files/closing.gguf`, ...(quiet ? ['--quiet'] : [])];
      const result = await cli(home, args);
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout.includes('progress: 100.0%'), !quiet);
      assert.ok(readFileSync(join(home, 'models', 'closing.gguf')).equals(MODEL));
    }
  });

  test('--max-size refuses a larger file (exit 1) and must be a size (exit 2)', async () => {
    routes['/files/sized.gguf'] = modelFile();
    const home = tempHome('palisade-cli-models-');
    const source = `${base}/files/sized.gguf`;
    const small = await cli(home, ['pull', source, '--max-size', '100kb']);
    assert.equal(small.code, 1);
    assert.match(
      small.stderr,
      /^palisade: .*sized\.gguf is [\d.]+ kB, over the size limit of 102\.4 kB; nothing was kept\. Pass --max-size SIZE/,
    );
    assert.deepEqual(files(home), []);
    for (const bad of ['lots', '0', '-5mb', '1tb']) {
      const result = await cli(home, ['pull', source, '--max-size', bad]);
      assert.equal(result.code, 2, `${bad}: ${result.stderr}`);
      assert.match(result.stderr, /--max-size expects a size such as 512gb/);
    }
    const fits = await cli(home, ['pull', source, '--max-size', '1mb', '--quiet']);
    assert.equal(fits.code, 0, fits.stderr);
  });

  test('a source URL the SSRF guard refuses exits 2 before any request', async () => {
    const home = tempHome('palisade-cli-models-');
    for (const source of [
      'http://169.254.169.254/m.gguf',
      'http://metadata.google.internal/m.gguf',
    ]) {
      const result = await cli(home, ['pull', source]);
      assert.equal(result.code, 2, `${source}: ${result.stderr}`);
      assert.match(result.stderr, /^palisade: download refused: .*metadata/);
    }
    assert.deepEqual(files(home), []);
  });

  test('a signed URL is never shown: not in errors, notices or progress', async () => {
    routes['/files/signed.gguf'] = modelFile({ cut: 100_000 });
    routes['/files/signed-404.gguf'] = (_req, res) => res.writeHead(404).end();
    const home = tempHome('palisade-cli-models-');
    const query = '?X-Amz-Signature=s3cr3t-sig&X-Amz-Credential=k3y';
    const outputs: string[] = [];
    for (const args of [
      ['pull', `${base}/files/signed.gguf${query}`],
      ['pull', `${base}/files/signed.gguf${query}`],
      ['pull', `${base}/files/signed-404.gguf${query}`],
      ['pull', `http://127.0.0.1:1/x.gguf${query}`],
      ['list'],
      ['list', '--json'],
    ]) {
      const result = await cli(home, args);
      outputs.push(result.stdout, result.stderr);
    }
    const all = outputs.join('\n');
    assert.match(all, /resuming at/);
    assert.match(all, /pulled model "signed"/);
    assert.match(all, /not found \(HTTP 404\)/);
    for (const word of ['s3cr3t-sig', 'k3y', 'X-Amz']) {
      assert.ok(!all.includes(word), `"${word}" shown in:\n${all}`);
    }
  });

  test('remove refuses symlinks and non-regular files with exit 2 and removes nothing', async () => {
    const home = tempHome('palisade-cli-models-');
    const dir = join(home, 'models');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const outside = join(tempHome('palisade-cli-outside-'), 'keep.gguf');
    writeFileSync(outside, MODEL);
    symlinkSync(outside, join(dir, 'link.gguf'));
    const link = await cli(home, ['remove', 'link']);
    assert.equal(link.code, 2, link.stderr);
    assert.match(
      link.stderr,
      /^palisade: link\.gguf is a symlink that leads outside the models folder/,
    );
    assert.ok(readFileSync(outside).equals(MODEL));

    writeFileSync(join(dir, 'odd.gguf'), MODEL);
    mkdirSync(join(dir, 'odd.gguf.part'));
    const odd = await cli(home, ['remove', 'odd']);
    assert.equal(odd.code, 2, odd.stderr);
    assert.match(odd.stderr, /odd\.gguf\.part is not a regular file; nothing was removed/);
    assert.deepEqual(files(home), ['link.gguf', 'odd.gguf', 'odd.gguf.part']);
  });

  test('doctor fails on a model file that is not GGUF, names the fix, and checks the runtime', async () => {
    const home = tempHome('palisade-cli-models-');
    mkdirSync(join(home, 'models'), { recursive: true, mode: 0o700 });
    writeFileSync(join(home, 'models', 'good.gguf'), MODEL);
    writeFileSync(join(home, 'models', 'broken.gguf'), '<!doctype html><title>Not Found</title>');
    const result = await runCli(['doctor', '--json', '--home', home], {
      env: { PALISADE_LOCAL_GPU: 'false' },
    });
    assert.equal(result.code, 1, result.stderr);
    const checks = JSON.parse(result.stdout) as Array<{
      status: string;
      check: string;
      detail: string;
    }>;
    const models = checks.find((c) => c.check === 'models');
    assert.equal(models?.status, 'FAIL');
    assert.match(
      models?.detail ?? '',
      /^broken: .*not a GGUF model.*\(palisade models remove broken\)$/,
    );
    const runtime = checks.find((c) => c.check === 'embedded runtime');
    assert.deepEqual(
      [runtime?.status, runtime?.detail],
      ['ok', 'llama.cpp prebuilt binary loads; device: CPU'],
    );

    writeFileSync(join(home, 'models', 'broken.gguf'), MODEL);
    const healthy = await runCli(['doctor', '--json', '--home', home], {
      env: { PALISADE_LOCAL_GPU: 'false' },
    });
    const after = JSON.parse(healthy.stdout) as Array<{
      status: string;
      check: string;
      detail: string;
    }>;
    assert.match(after.find((c) => c.check === 'models')?.detail ?? '', /^2 in /);
  });
});
