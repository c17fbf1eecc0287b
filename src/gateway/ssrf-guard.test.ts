import assert from 'node:assert/strict';
import type { LookupAddress, LookupOptions } from 'node:dns';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo, LookupFunction } from 'node:net';
import { describe, test } from 'node:test';
import { Pool } from 'undici';
import {
  SsrfError,
  assertUpstreamAllowed,
  checkUpstreamUrl,
  guardedLookup,
  isBlockedAddress,
} from './ssrf-guard.js';
import type { Lookup } from './ssrf-guard.js';

const BLOCKED_ADDRESSES = [
  '169.254.169.254',
  '[169.254.169.254]',
  'fd00:ec2::254',
  '[fd00:ec2::254]',
  '100.100.100.200',
  '169.254.0.1',
  '169.254.255.255',
  'fe80::1',
  'fe80::1%eth0',
  'febf:ffff::1',
  '0.0.0.0',
  '0.1.2.3',
  '::',
  '[::]',
  '224.0.0.1',
  '239.255.255.250',
  'ff02::1',
  '255.255.255.255',
  '::ffff:169.254.169.254',
  '::ffff:a9fe:a9fe',
  '[::ffff:a9fe:a9fe]',
  '::ffff:0:a9fe:a9fe',
  '::169.254.169.254',
  '64:ff9b::a9fe:a9fe',
  '64:ff9b::169.254.169.254',
  '::ffff:100.100.100.200',
  '::ffff:0.0.0.0',
  '::ffff:224.0.0.1',
  '::ffff:255.255.255.255',
  'not-an-ip',
  '',
];

const ALLOWED_ADDRESSES = [
  '127.0.0.1',
  '127.255.255.254',
  '::1',
  '[::1]',
  '0:0:0:0:0:0:0:1',
  '10.0.0.5',
  '172.16.0.1',
  '172.31.255.255',
  '192.168.1.20',
  'fc00::1',
  'fd00:ec2::253',
  'fd12:3456::1',
  '100.64.0.1',
  '100.100.100.199',
  '100.127.255.255',
  '::ffff:127.0.0.1',
  '::ffff:10.0.0.1',
  '8.8.8.8',
  '2606:4700::1111',
  '169.253.255.255',
  '169.255.0.0',
  '223.255.255.255',
];

describe('isBlockedAddress refuses', () => {
  for (const ip of BLOCKED_ADDRESSES) {
    test(JSON.stringify(ip), () => assert.equal(isBlockedAddress(ip), true));
  }
});

describe('isBlockedAddress allows', () => {
  for (const ip of ALLOWED_ADDRESSES) {
    test(ip, () => assert.equal(isBlockedAddress(ip), false));
  }
});

const REFUSED_URLS: Array<[url: string, message: RegExp]> = [
  ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254 is a cloud metadata address/],
  ['http://[fd00:ec2::254]/', /\[fd00:ec2::254\] is a cloud metadata address/],
  ['http://100.100.100.200/', /100\.100\.100\.200 is a cloud metadata address/],
  ['http://metadata.google.internal/', /metadata\.google\.internal is a cloud metadata name/],
  ['http://METADATA.Google.Internal./', /cloud metadata name/],
  ['http://metadata.goog/', /cloud metadata name/],
  ['http://metadata/', /cloud metadata name/],
  ['http://Metadata./', /cloud metadata name/],
  ['http://metadata\u3002google\u3002internal/', /cloud metadata name/],
  ['http://169.254.10.10:8080/', /is a link-local address/],
  ['http://[fe80::1]/', /is a link-local address/],
  ['http://0.0.0.0:11434/', /is an unspecified address/],
  ['http://0/', /0\.0\.0\.0 is an unspecified address/],
  ['http://[::]/', /is an unspecified address/],
  ['http://224.0.0.251/', /is a multicast address/],
  ['http://[ff02::1]/', /is a multicast address/],
  ['http://255.255.255.255/', /is the broadcast address/],
  ['http://[::ffff:169.254.169.254]/', /cloud metadata address/],
  ['http://[::ffff:a9fe:a9fe]/', /cloud metadata address/],
  ['http://[64:ff9b::a9fe:a9fe]/', /cloud metadata address/],
  ['http://2852039166/', /169\.254\.169\.254 is a cloud metadata address/],
  ['http://0xA9FEA9FE/', /169\.254\.169\.254 is a cloud metadata address/],
  ['http://0251.0376.0251.0376/', /169\.254\.169\.254 is a cloud metadata address/],
  ['http://169.254.169.254./', /cloud metadata address/],
  ['http://%31%36%39.254.169.254/', /cloud metadata address/],
  ['ftp://127.0.0.1/', /scheme ftp: is not allowed/],
  ['file:///etc/passwd', /scheme file: is not allowed/],
  ['gopher://127.0.0.1:6379/', /scheme gopher: is not allowed/],
  ['http://user:hunter2@127.0.0.1/', /credentials in the URL are not allowed/],
  ['http://user@127.0.0.1/', /credentials in the URL are not allowed/],
  ['http://:secret@127.0.0.1/', /credentials in the URL are not allowed/],
  ['http://', /not a valid URL/],
  ['http://[fe80::1%25eth0]/', /not a valid URL/],
  ['not a url', /not a valid URL/],
];

const ALLOWED_URLS = [
  'http://127.0.0.1:1234/v1',
  'http://localhost:11434',
  'http://[::1]:8080/',
  'http://127.1:8000/',
  'https://10.1.2.3/',
  'http://172.20.0.2:8000',
  'http://192.168.1.20:8080/v1',
  'http://[fd12::1]/',
  'http://100.64.1.1/',
  'https://api.example.com/v1',
  'http://gpu-box.lan:8000',
];

describe('checkUpstreamUrl refuses', () => {
  for (const [url, message] of REFUSED_URLS) {
    test(url, () => {
      assert.throws(() => checkUpstreamUrl(url), isSsrfError(/^upstream URL refused: /));
      assert.throws(() => checkUpstreamUrl(url), isSsrfError(message));
    });
  }
});

describe('checkUpstreamUrl allows', () => {
  for (const url of ALLOWED_URLS) {
    test(url, () => assert.ok(checkUpstreamUrl(url) instanceof URL));
  }
});

test('refusal messages never echo URL credentials', () => {
  assert.throws(
    () => checkUpstreamUrl('http://admin:hunter2@169.254.169.254/'),
    (error: Error) => !error.message.includes('hunter2'),
  );
});

function isSsrfError(message: RegExp): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof SsrfError, `not an SsrfError: ${String(error)}`);
    assert.equal(error.code, 'ERR_SSRF_BLOCKED');
    assert.match(error.message, message);
    return true;
  };
}

function fakeLookup(table: Record<string, string[]>): Lookup {
  return async (hostname) => {
    const addresses = table[hostname];
    if (addresses === undefined) {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    }
    return addresses.map((address) => ({ address, family: net.isIP(address) }));
  };
}

const FAKE_DNS = fakeLookup({
  'evil.test': ['169.254.169.254'],
  'mixed.test': ['127.0.0.1', '169.254.169.254'],
  'mapped.test': ['::ffff:a9fe:a9fe'],
  'local.test': ['127.0.0.1'],
  'dual.test': ['127.0.0.1', '::1'],
  'empty.test': [],
});

describe('assertUpstreamAllowed', () => {
  test('refuses a name that resolves to the metadata address', async () => {
    await assert.rejects(
      assertUpstreamAllowed('http://evil.test:8080/', FAKE_DNS),
      isSsrfError(/evil\.test resolves to 169\.254\.169\.254, a cloud metadata address/),
    );
  });

  test('refuses when any one resolved address is blocked', async () => {
    await assert.rejects(
      assertUpstreamAllowed('http://mixed.test/', FAKE_DNS),
      isSsrfError(/mixed\.test resolves to 169\.254\.169\.254/),
    );
  });

  test('refuses an IPv4-mapped answer', async () => {
    await assert.rejects(
      assertUpstreamAllowed('http://mapped.test/', FAKE_DNS),
      isSsrfError(/cloud metadata address/),
    );
  });

  test('allows names that resolve to loopback', async () => {
    assert.equal((await assertUpstreamAllowed('http://local.test:1234', FAKE_DNS)).port, '1234');
    assert.ok(await assertUpstreamAllowed('http://dual.test/', FAKE_DNS));
  });

  test('refuses a name that does not resolve', async () => {
    await assert.rejects(
      assertUpstreamAllowed('http://nowhere.test/', FAKE_DNS),
      isSsrfError(/cannot resolve nowhere\.test \(ENOTFOUND\)/),
    );
    await assert.rejects(
      assertUpstreamAllowed('http://empty.test/', FAKE_DNS),
      isSsrfError(/cannot resolve empty\.test/),
    );
  });

  test('runs the synchronous checks before any lookup', async () => {
    const neverCalled: Lookup = async () => assert.fail('lookup must not run');
    await assert.rejects(
      assertUpstreamAllowed('http://metadata.google.internal/', neverCalled),
      isSsrfError(/cloud metadata name/),
    );
    await assert.rejects(
      assertUpstreamAllowed('http://0xA9FEA9FE/', neverCalled),
      isSsrfError(/cloud metadata address/),
    );
    assert.ok(await assertUpstreamAllowed('http://127.0.0.1:1/', neverCalled));
    assert.ok(await assertUpstreamAllowed('http://[::1]:1/', neverCalled));
  });
});

/** A callback-style fake for `dns.lookup` whose answer the test can change between calls. */
function switchableLookup(answer: { address: string }, seen: LookupOptions[] = []): LookupFunction {
  return (_hostname, options, callback) => {
    seen.push({ ...options });
    const { address } = answer;
    const family = net.isIP(address);
    const all: LookupAddress[] = [{ address, family }];
    process.nextTick(() => (options.all ? callback(null, all) : callback(null, address, family)));
  };
}

function callGuarded(
  lookup: LookupFunction,
  hostname: string,
  options: LookupOptions,
): Promise<{ error: NodeJS.ErrnoException | null; address: string | LookupAddress[] }> {
  return new Promise((resolve) => {
    lookup(hostname, options, (error, address) => resolve({ error, address }));
  });
}

describe('guardedLookup', () => {
  test('passes allowed answers through in both callback forms', async () => {
    const lookup = guardedLookup(switchableLookup({ address: '127.0.0.1' }));
    const single = await callGuarded(lookup, 'local.test', {});
    assert.equal(single.error, null);
    assert.equal(single.address, '127.0.0.1');
    const all = await callGuarded(lookup, 'local.test', { all: true });
    assert.equal(all.error, null);
    assert.deepEqual(all.address, [{ address: '127.0.0.1', family: 4 }]);
  });

  test('refuses blocked answers in both callback forms', async () => {
    const lookup = guardedLookup(switchableLookup({ address: '169.254.169.254' }));
    for (const options of [{}, { all: true }]) {
      const { error } = await callGuarded(lookup, 'evil.test', options);
      assert.ok(error instanceof SsrfError);
      assert.equal(error.code, 'ERR_SSRF_BLOCKED');
      assert.match(error.message, /evil\.test resolves to 169\.254\.169\.254/);
    }
  });

  test('refuses a metadata name without resolving it', async () => {
    const neverCalled: LookupFunction = () => assert.fail('lookup must not run');
    const { error } = await callGuarded(guardedLookup(neverCalled), 'metadata.goog.', {});
    assert.ok(error instanceof SsrfError);
  });

  test('passes lookup errors through unchanged', async () => {
    const failing: LookupFunction = (_hostname, _options, callback) => {
      const error = Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
      process.nextTick(() => callback(error, ''));
    };
    const { error } = await callGuarded(guardedLookup(failing), 'nowhere.test', {});
    assert.equal(error?.code, 'ENOTFOUND');
  });
});

describe('connect-time rebinding through undici', () => {
  async function startServer(): Promise<{
    server: http.Server;
    port: number;
    sockets: () => number;
  }> {
    let connections = 0;
    const server = http.createServer((_req, res) => res.end('ok'));
    server.on('connection', () => connections++);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    return { server, port, sockets: () => connections };
  }

  for (const autoSelectFamily of [undefined, false]) {
    test(`a later connection to a rebound name fails (autoSelectFamily: ${autoSelectFamily})`, async (t) => {
      const { server, port, sockets } = await startServer();
      t.after(() => server.close());
      const answer = { address: '127.0.0.1' };
      const seen: LookupOptions[] = [];
      const lookup = guardedLookup(switchableLookup(answer, seen));
      const connect = autoSelectFamily === undefined ? { lookup } : { lookup, autoSelectFamily };
      const pool = new Pool(`http://rebind.test:${port}`, { connections: 1, connect });
      t.after(() => pool.close());

      const first = await pool.request({ path: '/', method: 'GET', reset: true });
      assert.equal(first.statusCode, 200);
      assert.equal(await first.body.text(), 'ok');
      assert.equal(sockets(), 1);

      answer.address = '169.254.169.254';
      await assert.rejects(
        pool.request({ path: '/', method: 'GET' }),
        isSsrfError(/^upstream connection refused: rebind\.test resolves to 169\.254\.169\.254/),
      );
      assert.equal(sockets(), 1, 'no connection reached the server after rebinding');
      assert.equal(seen.length, 2, 'each new connection looked the name up again');
      // Node 20 turns autoSelectFamily on by default, so net asks for every address.
      assert.equal(seen[0]?.all, autoSelectFamily === undefined ? true : undefined);
    });
  }
});

describe('the strict policy for URLs users supply (their MCP servers)', () => {
  const strict = { strict: true };

  test('refuses this machine and private networks that upstreams may use', () => {
    for (const url of [
      'http://127.0.0.1:8642/mesh',
      'http://127.9.9.9/',
      'http://[::1]:11434/',
      'http://localhost:6379/',
      'http://app.localhost/',
      'http://10.0.0.1/',
      'http://172.16.5.5/',
      'http://192.168.1.20:8000/',
      'http://100.64.0.1/',
      'http://[fd12:3456::1]/',
      'http://[::ffff:10.0.0.1]/',
      'http://[::ffff:7f00:1]/',
      'http://localhost.:9000/',
      'http://[2002:7f00:1::]/',
      'http://[64:ff9b:1::7f00:1]/',
      'http://[fec0::1]/',
      'http://192.0.0.1/',
      'http://198.18.0.1/',
      'http://2130706433/',
      'http://0x7f.1/',
      'http://127.1/',
    ]) {
      assert.throws(() => checkUpstreamUrl(url, strict), SsrfError, url);
      // The upstreams' default policy allows them (admins choose upstreams).
      assert.doesNotThrow(() => checkUpstreamUrl(url), url);
    }
    assert.throws(() => checkUpstreamUrl('http://169.254.169.254/', strict), /metadata/);
    assert.doesNotThrow(() => checkUpstreamUrl('https://mcp.example.com/mcp', strict));
  });

  test('allowed hosts are exempt from the strict ranges, never from the default ones', () => {
    const policy = { strict: true, allowedHosts: ['127.0.0.1', 'tools.lan'] };
    assert.doesNotThrow(() => checkUpstreamUrl('http://127.0.0.1:9000/mcp', policy));
    assert.throws(() => checkUpstreamUrl('http://10.0.0.1/', policy), SsrfError);
    const metadata = { strict: true, allowedHosts: ['169.254.169.254'] };
    assert.throws(() => checkUpstreamUrl('http://169.254.169.254/', metadata), /metadata/);
  });

  test('names resolving to private addresses are refused at add time and at connect time', async () => {
    const toPrivate: Lookup = async () => [{ address: '192.168.0.7', family: 4 }];
    await assert.rejects(
      assertUpstreamAllowed('http://tools.lan/mcp', toPrivate, strict),
      /resolves to 192\.168\.0\.7, a private address/,
    );
    await assertUpstreamAllowed('http://tools.lan/mcp', toPrivate, {
      strict: true,
      allowedHosts: ['tools.lan'],
    });
    const lookup = guardedLookup(
      ((_host, _options, callback) => callback(null, '127.0.0.1', 4)) as LookupFunction,
      strict,
    );
    const error = await new Promise<Error | null>((resolve) =>
      lookup('tools.lan', {}, (failure) => resolve(failure)),
    );
    assert.match(String(error?.message), /127\.0\.0\.1, a loopback address/);
  });
});
