import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isoNow, openStore } from './index.js';

test('the store opens in WAL mode, mode 0600, with every migration applied', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-store-'));
  const store = await openStore(home);
  assert.equal(store.sqlite.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(statSync(join(home, 'palisade.db')).mode & 0o777, 0o600);
  const tables = await store.db.introspection.getTables();
  assert.deepEqual(tables.map((t) => t.name).sort(), [
    'anthropic_model',
    'api_key',
    'audit_entry',
    'chat_message',
    'chat_usage',
    'conversation',
    'instance_setting',
    'job_run',
    'login_challenge',
    'mesh_claim',
    'mesh_delivery',
    'mesh_event',
    'mesh_message',
    'mesh_peer',
    'mesh_state',
    'recovery_code',
    'session',
    'upstream',
    'user',
    'user_secret',
    'user_setting',
  ]);
  await store.close();
  const again = await openStore(home);
  await again.close();
});

test('another connection committing changes data_version', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-store-'));
  const server = await openStore(home);
  const cli = await openStore(home);
  const before = server.dataVersion();
  await cli.db
    .insertInto('upstream')
    .values({
      name: 'a',
      url: 'http://127.0.0.1:1',
      api_key_env: null,
      api_key_enc: null,
      created_at: isoNow(),
    })
    .execute();
  // The change is noticed once the file watch fires (next turn of the event loop), or within
  // a second without it.
  for (let i = 0; i < 120 && server.dataVersion() === before; i++) await sleep(10);
  assert.notEqual(server.dataVersion(), before);
  await cli.close();
  await server.close();
});

test('audit entries cannot be edited or deleted', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-store-'));
  const store = await openStore(home);
  await store.db
    .insertInto('audit_entry')
    .values({
      seq: 1,
      ts: isoNow(),
      action: 'x',
      actor: 'y',
      line: '{}',
      hash: 'h',
      prev_hash: '0',
    })
    .execute();
  await assert.rejects(
    store.db.updateTable('audit_entry').set({ action: 'z' }).execute(),
    /append-only/,
  );
  await assert.rejects(store.db.deleteFrom('audit_entry').execute(), /append-only/);
  await store.close();
});

test('with checkpointEveryMs, WAL checkpoints run on a worker thread, not on the writer', async () => {
  const home = mkdtempSync(join(tmpdir(), 'palisade-store-'));
  const store = await openStore(home, { checkpointEveryMs: 50 });
  try {
    assert.equal(store.sqlite.pragma('wal_autocheckpoint', { simple: true }), 0);
    const before = statSync(join(home, 'palisade.db')).size;
    store.sqlite.exec('create table filler (x blob)');
    const insert = store.sqlite.prepare('insert into filler (x) values (randomblob(4000))');
    for (let i = 0; i < 500; i += 1) insert.run();
    // The pages reach the database file without the writer checkpointing. A checkpoint that
    // ran while the inserts went on moved only part of them: wait for the next one.
    const grown = () => statSync(join(home, 'palisade.db')).size > before + 500 * 4000;
    for (let i = 0; i < 250 && !grown(); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.ok(grown(), 'the worker checkpointed every page into the database file');
  } finally {
    await store.close();
  }
  const again = await openStore(home);
  assert.equal(again.sqlite.prepare('select count(*) from filler').pluck().get(), 500);
  await again.close();
});
