import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import { FAST_SCRYPT_ENV, newSignedInUser, WebClient } from '../support/web.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DIST = join(ROOT, 'dist', 'web');
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'";

before(() => {
  if (existsSync(join(DIST, 'index.html'))) return;
  const built = spawnSync(
    join(ROOT, 'node_modules', '.bin', 'vite'),
    ['build', '--logLevel', 'warn'],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
  assert.equal(built.status, 0, 'vite build');
});

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers, redirect: 'manual' });
  const body = Buffer.from(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

function assertDocumentHeaders(headers: Headers, what: string) {
  assert.equal(headers.get('content-security-policy'), CSP, what);
  assert.ok(!/unsafe-/.test(headers.get('content-security-policy') ?? ''), what);
  assert.equal(headers.get('x-content-type-options'), 'nosniff', what);
  assert.equal(headers.get('referrer-policy'), 'no-referrer', what);
  const permissions = headers.get('permissions-policy') ?? '';
  for (const feature of ['camera', 'microphone', 'geolocation', 'payment', 'usb']) {
    assert.match(permissions, new RegExp(`\\b${feature}=\\(\\)`), `${what}: ${feature}`);
  }
}

describe('the web app is served with strict headers', () => {
  let palisade: TestPalisade;
  before(async () => {
    palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV } });
  });
  after(() => palisade.close());

  test('index.html at / and the app paths: the CSP, never cached', async () => {
    for (const path of ['/', '/login', '/setup', '/settings', '/admin', '/admin/users', '/c/123']) {
      const page = await get(palisade.url + path);
      assert.equal(page.status, 200, path);
      assert.match(page.headers.get('content-type') ?? '', /^text\/html/, path);
      assertDocumentHeaders(page.headers, path);
      assert.equal(page.headers.get('cache-control'), 'no-cache', path);
      assert.equal(page.headers.get('x-frame-options'), 'DENY', path);
      assert.equal(page.headers.get('strict-transport-security'), null, 'no HSTS over http');
    }
    // Nothing inline that the CSP would have to allow.
    const html = (await get(palisade.url)).body.toString();
    for (const script of html.match(/<script\b[^>]*>/g) ?? []) {
      assert.match(script, /\ssrc="\/assets\//, `external script: ${script}`);
    }
    assert.ok(!/<script\b[^>]*>[^<]+<\/script>/.test(html), 'no inline script');
    assert.ok(!/<style\b/.test(html), 'no inline style element');
    assert.ok(!/\sstyle=/.test(html), 'no style attribute');
    assert.ok(!/\son[a-z]+=/.test(html), 'no inline event handler');
  });

  test('hashed assets: the CSP and a year of immutable cache', async () => {
    const assets = readdirSync(join(DIST, 'assets'));
    assert.ok(
      assets.some((f) => f.endsWith('.js')),
      'a script was built',
    );
    for (const file of assets) {
      const asset = await get(`${palisade.url}/assets/${file}`);
      assert.equal(asset.status, 200, file);
      assert.deepEqual(asset.body, readFileSync(join(DIST, 'assets', file)), file);
      assertDocumentHeaders(asset.headers, file);
      const cache = asset.headers.get('cache-control') ?? '';
      assert.match(cache, /\bmax-age=31536000\b/, `${file}: ${cache}`);
      assert.match(cache, /\bimmutable\b/, `${file}: ${cache}`);
      if (file.endsWith('.js')) {
        assert.match(asset.headers.get('content-type') ?? '', /javascript/, file);
      }
    }
  });

  test('nothing outside the assets folder is served from it', async () => {
    for (const path of [
      '/assets/../index.html',
      '/assets/%2e%2e/index.html',
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2e%2e%2f%2e%2e%2fpackage.json',
      '/assets/.env',
      '/assets/',
      '/assets/missing-0000.js',
      '/package.json',
      '/palisade.db',
    ]) {
      const response = await get(palisade.url + path);
      const text = response.body.toString();
      assert.ok(!text.includes('"devDependencies"'), `${path} leaks package.json`);
      if (response.status === 200) {
        // Only a path the URL parser normalised to an app page may answer, with the app.
        assert.match(response.headers.get('content-type') ?? '', /^text\/html/, path);
      } else {
        assert.ok(response.status >= 400 && response.status < 500, `${path}: ${response.status}`);
      }
    }
  });

  test('/api answers carry the security headers and a CSP that allows nothing', async () => {
    const browser = await newSignedInUser(palisade, 'alice');
    for (const path of ['/api/me', '/api/auth/state', '/api/nope']) {
      const response = await browser.get(path);
      assert.equal(response.headers.get('x-content-type-options'), 'nosniff', path);
      assert.equal(response.headers.get('referrer-policy'), 'no-referrer', path);
      assert.ok(response.headers.get('permissions-policy'), path);
      assert.equal(
        response.headers.get('content-security-policy'),
        "default-src 'none'; frame-ancestors 'none'",
        path,
      );
      assert.match(response.headers.get('content-type') ?? '', /^application\/json/, path);
    }
  });
});

describe('HSTS', () => {
  async function hstsOf(env: Record<string, string>, headers: Record<string, string> = {}) {
    const palisade = await startPalisade({ env: { ...FAST_SCRYPT_ENV, ...env } });
    try {
      const values = [];
      for (const path of ['/', '/api/auth/state', '/healthz']) {
        const response = await new WebClient(palisade.url).get(path, headers);
        values.push(response.headers.get('strict-transport-security'));
      }
      assert.equal(new Set(values).size, 1, `the same on every response: ${values.join(' | ')}`);
      return values[0];
    } finally {
      await palisade.close();
    }
  }

  test('sent only when PALISADE_HSTS is set and the request is HTTPS', async () => {
    assert.equal(await hstsOf({}), null, 'off by default');
    assert.equal(await hstsOf({ PALISADE_HTTPS: 'true' }), null, 'HTTPS alone: off');
    assert.equal(await hstsOf({ PALISADE_HSTS: 'on' }), null, 'never over plain http');
    assert.equal(
      await hstsOf({ PALISADE_HSTS: 'on' }, { 'x-forwarded-proto': 'https' }),
      null,
      'an untrusted X-Forwarded-Proto does not make it HTTPS',
    );
    assert.equal(
      await hstsOf({ PALISADE_HSTS: 'on', PALISADE_HTTPS: 'true' }),
      'max-age=63072000; includeSubDomains',
    );
    assert.equal(
      await hstsOf(
        { PALISADE_HSTS: 'on', PALISADE_TRUST_PROXY: 'true' },
        { 'x-forwarded-proto': 'https' },
      ),
      'max-age=63072000; includeSubDomains',
      'a trusted proxy saying https',
    );
  });

  test('preload and PALISADE_HSTS_MAX_AGE', async () => {
    assert.equal(
      await hstsOf({ PALISADE_HSTS: 'preload', PALISADE_HTTPS: 'true' }),
      'max-age=63072000; includeSubDomains; preload',
    );
    assert.equal(
      await hstsOf({
        PALISADE_HSTS: 'preload',
        PALISADE_HTTPS: 'true',
        PALISADE_HSTS_MAX_AGE: '365d',
      }),
      'max-age=31536000; includeSubDomains; preload',
    );
    assert.equal(
      await hstsOf({ PALISADE_HSTS: 'on', PALISADE_HTTPS: 'true', PALISADE_HSTS_MAX_AGE: '1h' }),
      'max-age=3600; includeSubDomains',
    );
  });
});
