import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, LookupFunction } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  BIG_RESULT_BYTES,
  startMcpFixture,
  type McpFixture,
} from '../../test/support/mcp-fixture.js';
import {
  createMcpToolbox,
  MAX_RESULT_BYTES,
  MAX_TOOLS,
  offeredName,
  toOpenAiTools,
  truncateText,
  type McpServerEntry,
  type McpToolbox,
} from './mcp-tools.js';

const TOKEN = 'mcp-secret-token-0123456789';

/** Waits for a condition the code under test reaches on its own. */
async function until(probe: () => boolean): Promise<void> {
  while (!probe()) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** A lookup answering `address` for every name, in both of Node's callback forms. */
function lookupTo(address: string): LookupFunction {
  return (_hostname, options, callback) => {
    const family = address.includes(':') ? 6 : 4;
    if (options.all) callback(null, [{ address, family }]);
    else callback(null, address, family);
  };
}

/** A port nothing listens on any more. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('offered names are sanitized, cut to 64 and made unique the same way every time', () => {
  assert.equal(offeredName('My Calc', 'add', new Set()), 'My_Calc__add');
  assert.equal(offeredName('files', 'read.file', new Set()), 'files__read_file');
  assert.equal(offeredName('ünï', 'a/b c', new Set()), '_n___a_b_c');
  const long = offeredName('s'.repeat(40), 't'.repeat(40), new Set());
  assert.equal(long.length, 64);
  assert.match(long, /^[a-zA-Z0-9_-]{1,64}$/);

  const taken = new Set(['My_Calc__add']);
  assert.equal(offeredName('My_Calc', 'add', taken), 'My_Calc__add_2');
  taken.add('My_Calc__add_2');
  assert.equal(offeredName('My.Calc', 'add', taken), 'My_Calc__add_3');
  const full = new Set([long]);
  const second = offeredName('s'.repeat(40), 't'.repeat(40), full);
  assert.equal(second.length, 64);
  assert.ok(second.endsWith('_2'));
});

test('truncateText keeps short text and cuts long text on a character boundary, with a note', () => {
  assert.equal(truncateText('short', 10), 'short');
  const cut = truncateText('é'.repeat(10), 5);
  assert.equal(cut, 'éé\n[truncated: 20 bytes, the first 5 shown]');
  const big = truncateText('x'.repeat(70_000), MAX_RESULT_BYTES);
  assert.ok(big.startsWith('x'.repeat(MAX_RESULT_BYTES)));
  assert.ok(big.endsWith(`[truncated: 70000 bytes, the first ${MAX_RESULT_BYTES} shown]`));
});

/** The test MCP servers listen on loopback, which users' strict policy refuses unless allowed. */
const LOCAL = { strict: true, allowedHosts: ['127.0.0.1'] };

describe('MCP toolbox against a real MCP server', () => {
  let mcp: McpFixture;
  let toolbox: McpToolbox;
  let clock = 1_000_000;
  const calc = (): McpServerEntry => ({ id: 'calc', name: 'My Calc', url: mcp.url, token: TOKEN });

  before(async () => {
    mcp = await startMcpFixture({ token: TOKEN });
    toolbox = createMcpToolbox({ now: () => clock, ssrf: LOCAL });
  });
  after(async () => {
    await toolbox.close();
    await mcp.close();
  });

  test('lists the tools under sanitized names with their schemas, and calls them with the token', async () => {
    const session = await toolbox.open('u-list', [calc()], new AbortController().signal);
    try {
      assert.deepEqual(session.notices, []);
      assert.deepEqual(
        session.tools.map((t) => t.name),
        ['My_Calc__add', 'My_Calc__fail', 'My_Calc__wait', 'My_Calc__big', 'My_Calc__read_file'],
      );
      const add = session.tools[0];
      assert.equal(add?.server, 'My Calc');
      assert.equal(add?.tool, 'add');
      assert.equal(add?.description, 'Adds two numbers.');
      assert.deepEqual(add?.parameters.properties, {
        a: { type: 'number' },
        b: { type: 'number' },
      });
      assert.deepEqual(add?.parameters.required, ['a', 'b']);
      assert.deepEqual(toOpenAiTools(session.tools.slice(0, 1)), [
        {
          type: 'function',
          function: {
            name: 'My_Calc__add',
            description: 'Adds two numbers.',
            parameters: add?.parameters,
          },
        },
      ]);

      assert.deepEqual(await session.call('My_Calc__add', { a: 2, b: 3 }), {
        ok: true,
        content: '5',
      });
      assert.deepEqual(await session.call('My_Calc__read_file', { path: 'notes.md' }), {
        ok: true,
        content: 'contents of notes.md',
      });
      assert.deepEqual(mcp.calls.slice(-2), [
        { name: 'add', arguments: { a: 2, b: 3 }, authorization: `Bearer ${TOKEN}` },
        { name: 'read.file', arguments: { path: 'notes.md' }, authorization: `Bearer ${TOKEN}` },
      ]);
    } finally {
      await session.close();
    }
  });

  test('a failing tool, an unknown tool and a huge result are outcomes, not crashes', async () => {
    const session = await toolbox.open('u-fail', [calc()], new AbortController().signal);
    try {
      assert.deepEqual(await session.call('My_Calc__fail', {}), {
        ok: false,
        content: 'the tool broke',
      });
      assert.deepEqual(await session.call('nope__nothing', {}), {
        ok: false,
        content: JSON.stringify({ error: 'no tool named "nope__nothing"' }),
      });
      const big = await session.call('My_Calc__big', {});
      assert.equal(big.ok, true);
      assert.ok(big.content.startsWith('x'.repeat(MAX_RESULT_BYTES)));
      assert.ok(
        big.content.endsWith(
          `[truncated: ${BIG_RESULT_BYTES} bytes, the first ${MAX_RESULT_BYTES} shown]`,
        ),
      );
      const invalid = await session.call('My_Calc__add', { a: 'two' });
      assert.equal(invalid.ok, false, 'arguments the schema refuses');
    } finally {
      await session.close();
    }
  });

  test('tool lists are cached per user and server for 60 s; calls still connect', async () => {
    const lists = () => mcp.methods.filter((m) => m === 'tools/list').length;
    const before = lists();
    const first = await toolbox.open('u-cache', [calc()], new AbortController().signal);
    await first.close();
    assert.equal(lists(), before + 1);

    clock += 59_000;
    const second = await toolbox.open('u-cache', [calc()], new AbortController().signal);
    assert.equal(lists(), before + 1, 'the cached list is used');
    assert.equal(second.tools.length, 5);
    assert.deepEqual(await second.call('My_Calc__add', { a: 1, b: 1 }), { ok: true, content: '2' });
    await second.close();

    const other = await toolbox.open('u-other', [calc()], new AbortController().signal);
    await other.close();
    assert.equal(lists(), before + 2, 'another user lists for themselves');

    clock += 2_000;
    const third = await toolbox.open('u-cache', [calc()], new AbortController().signal);
    await third.close();
    assert.equal(lists(), before + 3, 'listed again once the cache expired');
  });

  test('a wrong or missing token skips the server with a notice that holds no secret', async () => {
    const wrong = 'wrong-token-abcdef';
    const session = await toolbox.open(
      'u-token',
      [
        { ...calc(), id: 'a', name: 'Wrong', token: wrong },
        { ...calc(), id: 'b', name: 'Missing', token: undefined },
        calc(),
      ],
      new AbortController().signal,
    );
    try {
      assert.deepEqual(session.notices, [
        'MCP server "Wrong" skipped: it refused the token (HTTP 401); check it in Settings',
        'MCP server "Missing" skipped: it requires a token (HTTP 401); add one in Settings',
      ]);
      assert.ok(!session.notices.join('\n').includes(wrong), 'the echoed token is not passed on');
      assert.equal(session.tools.length, 5, 'the good server is still offered');
    } finally {
      await session.close();
    }
  });

  test('two servers whose names sanitize alike get distinct tool names, in server order', async () => {
    const session = await toolbox.open(
      'u-collide',
      [calc(), { ...calc(), id: 'calc-2', name: 'My_Calc' }],
      new AbortController().signal,
    );
    try {
      const names = session.tools.map((t) => t.name);
      assert.equal(names.length, 10);
      assert.equal(new Set(names).size, 10);
      assert.deepEqual(names.slice(5, 7), ['My_Calc__add_2', 'My_Calc__fail_2']);
      assert.deepEqual(await session.call('My_Calc__add_2', { a: 4, b: 4 }), {
        ok: true,
        content: '8',
      });
    } finally {
      await session.close();
    }
  });

  test('metadata and link-local addresses are refused, however they are reached', async () => {
    const session = await toolbox.open(
      'u-ssrf',
      [
        { id: '1', name: 'Metadata', url: 'http://169.254.169.254/mcp' },
        { id: '2', name: 'Mapped', url: 'http://[::ffff:169.254.10.10]/mcp' },
        { id: '3', name: 'Named', url: 'http://metadata.google.internal/mcp' },
        { id: '4', name: 'Scheme', url: 'file:///etc/passwd' },
      ],
      new AbortController().signal,
    );
    assert.deepEqual(session.tools, []);
    assert.deepEqual(session.notices, [
      'MCP server "Metadata" skipped: its address is not allowed (169.254.169.254 is a cloud metadata address)',
      'MCP server "Mapped" skipped: its address is not allowed ([::ffff:a9fe:a0a] is a link-local address)',
      'MCP server "Named" skipped: its address is not allowed (metadata.google.internal is a cloud metadata name)',
      'MCP server "Scheme" skipped: its address is not allowed (scheme file: is not allowed, use http: or https:)',
    ]);
    await session.close();
  });

  test('a name that resolves to a link-local address is refused when connecting', async () => {
    const rebound = createMcpToolbox({ lookup: lookupTo('169.254.10.10'), ssrf: LOCAL });
    const loopback = createMcpToolbox({
      lookup: lookupTo('127.0.0.1'),
      ssrf: { strict: true, allowedHosts: ['mcp.internal.test'] },
    });
    const strict = createMcpToolbox({ lookup: lookupTo('127.0.0.1') });
    const server = { ...calc(), url: `http://mcp.internal.test:${mcp.port}/mcp` };
    try {
      const refused = await rebound.open('u-dns', [server], new AbortController().signal);
      assert.deepEqual(refused.tools, []);
      assert.deepEqual(refused.notices, [
        'MCP server "My Calc" skipped: its name does not lead to an address Palisade may reach (a public one, or a host in PALISADE_MCP_ALLOWED_HOSTS)',
      ]);
      // Resolving to loopback is refused by the users' strict policy...
      const local = await strict.open('u-dns', [server], new AbortController().signal);
      assert.deepEqual(local.tools, []);
      assert.match(local.notices[0] ?? '', /does not lead to an address Palisade may reach/);
      await local.close();
      // ...unless the operator allowed the host (PALISADE_MCP_ALLOWED_HOSTS).
      const allowed = await loopback.open('u-dns', [server], new AbortController().signal);
      assert.equal(allowed.tools.length, 5);
      assert.deepEqual(await allowed.call('My_Calc__add', { a: 1, b: 2 }), {
        ok: true,
        content: '3',
      });
      await allowed.close();
    } finally {
      await strict.close();
      await rebound.close();
      await loopback.close();
    }
  });

  test('a server that is down is skipped with the reason', async () => {
    const port = await closedPort();
    const session = await toolbox.open(
      'u-down',
      [{ id: 'down', name: 'Down', url: `http://127.0.0.1:${port}/mcp` }],
      new AbortController().signal,
    );
    assert.deepEqual(session.notices, [
      'MCP server "Down" skipped: the connection failed (ECONNREFUSED)',
    ]);
    await session.close();
  });

  test('a server that never answers, or answers too much, is skipped with the reason', async () => {
    const silent = http.createServer(() => undefined);
    const flood = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const mb = Buffer.alloc(1024 * 1024, 32);
      for (let i = 0; i < 9; i++) res.write(mb);
      res.end();
    });
    const ports: number[] = [];
    for (const server of [silent, flood]) {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      ports.push((server.address() as AddressInfo).port);
    }
    const impatient = createMcpToolbox({ connectTimeoutMs: 200, ssrf: LOCAL });
    try {
      const session = await impatient.open(
        'u-bad-servers',
        [
          { id: 'silent', name: 'Silent', url: `http://127.0.0.1:${ports[0]}/mcp` },
          { id: 'flood', name: 'Flood', url: `http://127.0.0.1:${ports[1]}/mcp` },
        ],
        new AbortController().signal,
      );
      assert.deepEqual(session.notices, [
        'MCP server "Silent" skipped: it did not answer within 0.2 s',
        'MCP server "Flood" skipped: it sent a response larger than 2 MB',
      ]);
      await session.close();
    } finally {
      await impatient.close();
      for (const server of [silent, flood]) {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    }
  });

  test('the tool calls of one answer share a time budget; past it, calls fail at once', async () => {
    const thrifty = createMcpToolbox({ toolBudgetMs: 200, ssrf: LOCAL });
    const session = await thrifty.open('u-budget', [calc()], new AbortController().signal);
    const spent = JSON.stringify({
      error: 'the tool calls of this answer took more than 0.2 s in all; no more are run',
    });
    try {
      assert.deepEqual(await session.call('My_Calc__wait', {}), { ok: false, content: spent });
      const calls = mcp.calls.length;
      assert.deepEqual(await session.call('My_Calc__add', { a: 1, b: 2 }), {
        ok: false,
        content: spent,
      });
      assert.equal(mcp.calls.length, calls, 'the server was not called again');
    } finally {
      await session.close();
      await thrifty.close();
    }
  });

  test('a call past its timeout is a failed outcome', async () => {
    const impatient = createMcpToolbox({ callTimeoutMs: 200, ssrf: LOCAL });
    const session = await impatient.open('u-timeout', [calc()], new AbortController().signal);
    try {
      assert.deepEqual(await session.call('My_Calc__wait', {}), {
        ok: false,
        content: JSON.stringify({ error: 'the tool call failed: it did not answer within 0.2 s' }),
      });
    } finally {
      await session.close();
      await impatient.close();
    }
  });

  test('stop aborts the call in flight, down to its HTTP request', async () => {
    const stop = new AbortController();
    const session = await toolbox.open('u-stop', [calc()], stop.signal);
    const aborted = mcp.abortedCalls;
    const waits = mcp.calls.filter((c) => c.name === 'wait').length;
    const call = session.call('My_Calc__wait', {});
    await until(() => mcp.calls.filter((c) => c.name === 'wait').length > waits);
    stop.abort();
    await assert.rejects(call);
    await until(() => mcp.abortedCalls > aborted);
    await session.close();
  });

  test(`at most ${MAX_TOOLS} tools are offered, all servers together`, async () => {
    const many = await startMcpFixture({ extraTools: 70 });
    try {
      const session = await toolbox.open(
        'u-many',
        [calc(), { id: 'many', name: 'many', url: many.url }],
        new AbortController().signal,
      );
      assert.equal(session.tools.length, MAX_TOOLS);
      assert.equal(session.tools.at(-1)?.name, 'many__t53');
      // The server lists 75; the client reads at most 64 of them.
      assert.deepEqual(session.notices, [
        `only ${MAX_TOOLS} tools can be offered at once; 5 left out`,
      ]);
      await session.close();
    } finally {
      await many.close();
    }
  });
});
