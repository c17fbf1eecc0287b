import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { once } from 'node:events';
import { request } from 'undici';
import { startMockUpstream } from '../support/mock-upstream.js';
import { runCli, spawnCli, tempHome, waitForOutput } from '../support/palisade.js';

async function status(url: string, key?: string): Promise<number> {
  const response = await request(url, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  await response.body.text();
  return response.statusCode;
}

/** Starts `palisade serve` as its own process on a free port; resolves with its URL. */
async function serve(home: string, args: string[] = [], env: Record<string, string> = {}) {
  const child = spawnCli(['serve', '--home', home, '--port', '0', ...args], env);
  const line = await waitForOutput(child, /Palisade listening on http:\/\/[^"\s]+/);
  const url = line.replace('Palisade listening on ', '');
  return { child, url };
}

describe('the palisade command', () => {
  test('a bad setting stops start-up with one line naming it, and exit code 2', async () => {
    const result = await runCli(['serve', '--home', tempHome()], {
      env: { PALISADE_MAX_TOKENS: 'lots' },
    });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      'palisade: invalid PALISADE_MAX_TOKENS: expected an integer from 1 to 10000000; got "lots"\n',
    );
    const flag = await runCli(['serve', '--port', '99999', '--home', tempHome()]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /^palisade: invalid --port \(PALISADE_PORT\)/);
    assert.ok(!flag.stderr.includes('    at '), 'no stack trace');
    const unknown = await runCli(['frobnicate']);
    assert.equal(unknown.code, 2, 'usage errors exit 2');
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
    const model = await runCli(['serve', '--model', 'x.gguf', '--home', tempHome()]);
    assert.equal(model.code, 2);
    assert.match(model.stderr, /^palisade: --model x\.gguf: there is no such file/);
  });

  test('the home is 0700 with 0600 files, and a second server on it is refused', async () => {
    const home = join(tempHome(), 'nested', 'home');
    const first = await serve(home);
    try {
      assert.equal(statSync(home).mode & 0o777, 0o700);
      for (const file of ['palisade.db', 'secret.key', 'palisade.pid']) {
        assert.equal(statSync(join(home, file)).mode & 0o777, 0o600, file);
      }
      assert.equal(readFileSync(join(home, 'secret.key')).length, 32);
      const second = await runCli(['serve', '--home', home, '--port', '0']);
      assert.equal(second.code, 2);
      assert.match(
        second.stderr,
        /another Palisade \(pid \d+\) is already serving from .*stop it first/,
      );
    } finally {
      first.child.kill('SIGTERM');
      await once(first.child, 'exit');
    }
    assert.equal(existsSync(join(home, 'palisade.pid')), false, 'the pid file is removed at exit');
  });

  test('a stale pid file left by a crash is recovered', async () => {
    const home = tempHome();
    writeFileSync(join(home, 'palisade.pid'), '2147483646\n', { mode: 0o600 });
    const server = await serve(home);
    server.child.kill('SIGTERM');
    const [code] = await once(server.child, 'exit');
    assert.equal(code, 0);
  });

  test('keys created and revoked by the CLI take effect in the running server', async () => {
    const home = tempHome();
    const server = await serve(home);
    try {
      assert.equal(await status(`${server.url}/v1/models`), 200, 'open: loopback, no keys');
      const created = await runCli([
        'keys',
        'create',
        'laptop',
        '--rpm',
        '600',
        '--expires',
        '30d',
        '--home',
        home,
      ]);
      assert.equal(created.code, 0, created.stderr);
      const key = created.stdout.trim();
      assert.match(key, /^pk_[A-Za-z0-9_-]{43}$/);
      assert.match(created.stderr, /only time it is shown/);
      assert.equal(
        await status(`${server.url}/v1/models`),
        401,
        'a key now exists: keyless is refused',
      );
      assert.equal(await status(`${server.url}/v1/models`, key), 200);

      const listed = await runCli(['keys', 'list', '--json', '--home', home]);
      const [entry] = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
      assert.equal(entry?.name, 'laptop');
      assert.equal(entry?.rpm, 600);
      assert.equal(entry?.status, 'active');
      assert.ok(!listed.stdout.includes(key), 'listings never show the key');

      const revoked = await runCli(['keys', 'revoke', 'laptop', '--home', home]);
      assert.equal(revoked.code, 0);
      assert.equal(await status(`${server.url}/v1/models`, key), 401);

      const missing = await runCli(['keys', 'revoke', 'nope', '--home', home]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /no key with id or name "nope"/);
      const badExpiry = await runCli(['keys', 'create', 'x', '--expires', 'soon', '--home', home]);
      assert.equal(badExpiry.code, 2);
      assert.match(badExpiry.stderr, /--expires takes a duration such as 90s/);
    } finally {
      server.child.kill('SIGTERM');
      await once(server.child, 'exit');
    }
  });

  test('upstreams added by the CLI are served without a restart', async () => {
    const home = tempHome();
    const upstream = await startMockUpstream({ models: ['late-model'] });
    const server = await serve(home, [], { PALISADE_HEALTH_INTERVAL: '200ms' });
    try {
      const added = await runCli(['upstreams', 'add', 'late', upstream.url, '--home', home]);
      assert.equal(added.code, 0, added.stderr);
      let models: string[] = [];
      for (let i = 0; i < 50 && !models.includes('late-model'); i++) {
        const response = await request(`${server.url}/v1/models`);
        models = ((await response.body.json()) as { data: Array<{ id: string }> }).data.map(
          (m) => m.id,
        );
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.deepEqual(models, ['late-model']);
    } finally {
      server.child.kill('SIGTERM');
      await once(server.child, 'exit');
      await upstream.close();
    }
  });

  test('SIGTERM lets an in-flight stream finish, then exits cleanly', async () => {
    const home = tempHome();
    const upstream = await startMockUpstream({
      models: ['m'],
      streamChunks: 10,
      chunkDelayMs: 100,
    });
    const server = await serve(home, ['--upstream', `m=${upstream.url}`]);
    const response = await request(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'm',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      }),
    });
    assert.equal(response.statusCode, 200);
    const exited = once(server.child, 'exit');
    server.child.kill('SIGTERM');
    const text = await response.body.text();
    assert.match(text, /data: \[DONE\]/, 'the stream ran to its end');
    const [code] = await exited;
    assert.equal(code, 0);
    await upstream.close();
  });

  test('audit verify passes on a clean log and names the first broken line', async () => {
    const home = tempHome();
    for (const name of ['a', 'b', 'c']) {
      assert.equal((await runCli(['keys', 'create', name, '--home', home])).code, 0);
    }
    const clean = await runCli(['audit', 'verify', '--home', home]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /audit log intact: 3 entries/);
    const file = join(home, 'audit.jsonl');
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.ok(!lines.join('').includes('pk_'), 'no key in the audit log');
    lines[1] = (lines[1] as string).replace('"b"', '"B"');
    writeFileSync(file, lines.join('\n'));
    const broken = await runCli(['audit', 'verify', '--home', home]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /audit log broken at line 2/);
  });

  test('doctor reports a healthy home and names what is wrong', async () => {
    const home = tempHome();
    const upstream = await startMockUpstream();
    try {
      const healthy = await runCli(['doctor', '--json', '--home', home], {
        env: { PALISADE_UPSTREAMS: `mock=${upstream.url}` },
      });
      assert.equal(healthy.code, 0, healthy.stdout + healthy.stderr);
      const checks = JSON.parse(healthy.stdout) as Array<{ status: string; check: string }>;
      assert.ok(checks.every((c) => c.status === 'ok'));
      assert.ok(checks.some((c) => c.check === 'upstream mock'));
      const broken = await runCli(['doctor', '--home', home], {
        env: { PALISADE_UPSTREAMS: 'meta=http://169.254.169.254' },
      });
      assert.equal(broken.code, 1);
      assert.match(broken.stdout, /FAIL\s+upstream meta\s+.*cloud metadata address/);
    } finally {
      await upstream.close();
    }
  });
});
