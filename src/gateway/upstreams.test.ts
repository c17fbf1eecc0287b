import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { startMockUpstream } from '../../test/support/mock-upstream.js';
import { openStore } from '../store/index.js';
import {
  addUpstream,
  createUpstreamRegistry,
  listStoredUpstreams,
  type RegistryOptions,
} from './upstreams.js';

const masterKey = Buffer.alloc(32, 7);

async function setup() {
  const home = mkdtempSync(join(tmpdir(), 'palisade-upstreams-'));
  const store = await openStore(home);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
  /** A registry on this store; each test passes only what it changes. */
  const registry = (options: Partial<RegistryOptions> = {}) =>
    createUpstreamRegistry({
      store,
      masterKey,
      logger,
      configured: [],
      healthIntervalMs: 60_000,
      ...options,
    });
  return { home, store, logger, lines, registry };
}

test('probing finds a server on a usual port and says so in the log', async () => {
  const mock = await startMockUpstream({ models: ['probed'] });
  const { store, lines, registry: makeRegistry } = await setup();
  const registry = makeRegistry({
    probePorts: [
      { name: 'lmstudio', port: mock.port, product: 'LM Studio' },
      { name: 'nothing', port: 1, product: 'Nobody' },
    ],
  });
  await registry.start(true);
  assert.deepEqual(
    registry.list().map((u) => [u.name, u.source, u.healthy]),
    [['lmstudio', 'probe', true]],
  );
  assert.deepEqual(
    registry.models().map((m) => m.id),
    ['probed'],
  );
  assert.match(lines.join(''), /found LM Studio/);
  await registry.close();
  await mock.close();
  await store.close();
});

test('with nothing found, the log names the ports and the fix', async () => {
  const { store, lines, registry: makeRegistry } = await setup();
  const registry = makeRegistry({
    probePorts: [{ name: 'nothing', port: 1, product: 'Nobody' }],
  });
  await registry.start(true);
  assert.equal(registry.list().length, 0);
  assert.match(lines.join(''), /none found on ports 1 \(Nobody\).*palisade upstreams add NAME URL/);
  await registry.close();
  await store.close();
});

test('models from several upstreams are merged, deduplicated, and routed healthy-first', async () => {
  const a = await startMockUpstream({ models: ['shared', 'only-a'] });
  const b = await startMockUpstream({ models: ['shared', 'only-b'] });
  const { store, registry: makeRegistry } = await setup();
  const registry = makeRegistry({
    configured: [
      { name: 'a', url: a.url },
      { name: 'b', url: `${b.url}/v1` },
    ],
  });
  await registry.start(false);
  assert.deepEqual(
    registry
      .models()
      .map((m) => m.id)
      .sort(),
    ['only-a', 'only-b', 'shared'],
  );
  assert.deepEqual(
    registry.candidates('shared').map((u) => u.name),
    ['a', 'b'],
  );
  const upstreamA = registry.list().find((u) => u.name === 'a');
  assert.ok(upstreamA);
  upstreamA.healthy = false;
  assert.deepEqual(
    registry.candidates('shared').map((u) => u.name),
    ['b', 'a'],
  );
  assert.deepEqual(registry.candidates('unknown'), [], 'with several upstreams, no guessing');
  assert.equal(
    registry.list().find((u) => u.name === 'b')?.basePath,
    '',
    'a trailing /v1 is folded',
  );
  await registry.close();
  await a.close();
  await b.close();
  await store.close();
});

test('a stored upstream key is sealed at rest and sent to the upstream', async () => {
  const mock = await startMockUpstream({ models: ['secret-model'], apiKey: 'sk-upstream-secret' });
  const { store, registry: makeRegistry } = await setup();
  await addUpstream(store, masterKey, {
    name: 'sealed',
    url: mock.url,
    apiKey: 'sk-upstream-secret',
  });
  const [row] = await listStoredUpstreams(store);
  assert.match(row?.api_key_enc ?? '', /^enc\$v1\$/);
  assert.ok(!JSON.stringify(row).includes('sk-upstream-secret'));
  const registry = makeRegistry();
  await registry.start(false);
  assert.equal(
    registry.list()[0]?.healthy,
    true,
    'the health check authenticated with the unsealed key',
  );
  assert.equal(mock.requests.at(-1)?.headers.authorization, 'Bearer sk-upstream-secret');
  await registry.close();
  await mock.close();
  await store.close();
});

test('an upstream key can come from a named environment variable', async () => {
  const mock = await startMockUpstream({ models: ['env-model'], apiKey: 'sk-from-env' });
  const { store, registry: makeRegistry } = await setup();
  process.env.PALISADE_TEST_UPSTREAM_KEY = 'sk-from-env';
  await addUpstream(store, masterKey, {
    name: 'env',
    url: mock.url,
    apiKeyEnv: 'PALISADE_TEST_UPSTREAM_KEY',
  });
  const registry = makeRegistry();
  await registry.start(false);
  assert.equal(registry.list()[0]?.healthy, true);
  delete process.env.PALISADE_TEST_UPSTREAM_KEY;
  await assert.rejects(
    addUpstream(store, masterKey, { name: 'bad', url: mock.url, apiKeyEnv: 'not a var' }),
    /not an environment variable name/,
  );
  await assert.rejects(
    addUpstream(store, masterKey, { name: 'env', url: mock.url }),
    /already exists/,
  );
  await registry.close();
  await mock.close();
  await store.close();
});

test('the embedded upstream joins while it has models, leaves when it has none, and probing still runs beside it', async () => {
  // A mock stands in for the embedded model server: it answers /v1/models like it.
  const local = await startMockUpstream({ models: ['tiny'] });
  const probed = await startMockUpstream({ models: ['probed'] });
  const { store, registry: makeRegistry } = await setup();
  let hasModels = true;
  const registry = makeRegistry({
    local: { name: 'local', url: local.url, apiKey: 'token', hasModels: async () => hasModels },
    probePorts: [{ name: 'lmstudio', port: probed.port, product: 'LM Studio' }],
  });
  await registry.start(true);
  assert.deepEqual(
    registry.list().map((u) => [u.name, u.source]),
    [
      ['local', 'local'],
      ['lmstudio', 'probe'],
    ],
  );
  assert.deepEqual(
    registry.candidates('probed').map((u) => u.name),
    ['lmstudio'],
  );

  hasModels = false;
  await registry.checkAll();
  assert.deepEqual(
    registry.list().map((u) => u.name),
    ['lmstudio'],
  );
  // Alone again, the probed server takes every model name, as before the embedded one existed.
  assert.deepEqual(
    registry.candidates('anything').map((u) => u.name),
    ['lmstudio'],
  );

  hasModels = true;
  await registry.checkAll();
  assert.deepEqual(
    registry
      .list()
      .map((u) => u.name)
      .sort(),
    ['lmstudio', 'local'],
  );
  await registry.close();
  await Promise.all([local.close(), probed.close(), store.close()]);
});

test("a configured upstream may not take the embedded models' name while they have models", async () => {
  const local = await startMockUpstream({ models: ['tiny'] });
  const other = await startMockUpstream({ models: ['x'] });
  const { store, registry: makeRegistry } = await setup();
  const registry = makeRegistry({
    local: { name: 'local', url: local.url, apiKey: 'token', hasModels: async () => true },
    configured: [{ name: 'local', url: other.url }],
  });
  await assert.rejects(
    registry.start(false),
    /upstream name "local" is taken by the embedded models/,
  );
  await registry.close();
  await Promise.all([local.close(), other.close(), store.close()]);
});
