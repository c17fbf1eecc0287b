import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sha256Hex } from '../crypto/index.js';
import { openStore, type Store } from '../store/index.js';
import { createAuditLog, listAuditEntries, verifyAudit, type AuditVerifyResult } from './index.js';

const ZEROS = '0'.repeat(64);

interface WriterJob {
  home: string;
  writer: number;
  count: number;
}

function tempHome(): string {
  return mkdtempSync(join(tmpdir(), 'palisade-audit-'));
}

function fileLines(home: string): string[] {
  return readFileSync(join(home, 'audit.jsonl'), 'utf8').split('\n').slice(0, -1);
}

function writeLines(home: string, lines: string[]): void {
  writeFileSync(join(home, 'audit.jsonl'), lines.map((l) => l + '\n').join(''));
}

/** A home with `count` entries, and its store left open. */
async function seededHome(count = 5): Promise<{ home: string; store: Store }> {
  const home = tempHome();
  const store = await openStore(home);
  const audit = createAuditLog(store, home);
  for (let i = 1; i <= count; i++) {
    audit.record({ action: 'key.create', actor: 'cli', target: `key-${i}` });
  }
  return { home, store };
}

function assertBrokenAt(result: AuditVerifyResult, line: number, reason: RegExp): void {
  assert.equal(result.ok, false, 'expected the audit log to be reported broken');
  if (result.ok) return;
  assert.equal(result.line, line, `wrong line; reason: ${result.reason}`);
  assert.match(result.reason, reason);
}

// The concurrency test runs this file again as child processes, each appending to the
// same home through its own connection, like the server and a CLI command.
const WRITER_ENV = 'PALISADE_AUDIT_TEST_WRITER';
const writerJob = process.env[WRITER_ENV];

interface Writer {
  /** Resolves once the child has its connection open. */
  ready: Promise<void>;
  go(): void;
  done: Promise<void>;
}

function startWriter(job: WriterJob): Writer {
  // Keep the TypeScript loader, drop the test runner's own flags.
  const execArgv = process.execArgv.filter((arg) => !arg.startsWith('--test'));
  const child = spawn(process.execPath, [...execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, [WRITER_ENV]: JSON.stringify(job) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`writer exited with ${code}: ${stderr}`)),
    );
  });
  const ready = Promise.race([
    new Promise<void>((resolve) => child.stdout.once('data', () => resolve())),
    done,
  ]);
  return { ready, go: () => child.stdin.end('go\n'), done };
}

if (writerJob) {
  const job = JSON.parse(writerJob) as WriterJob;
  const store = await openStore(job.home);
  const audit = createAuditLog(store, job.home);
  // Start together with the other writers, so their transactions really contend.
  process.stdout.write('ready\n');
  await once(process.stdin, 'data');
  for (let i = 0; i < job.count; i++) {
    audit.record({ action: 'job.run', actor: `writer-${job.writer}`, details: { count: i } });
  }
  await store.close();
} else {
  test('the chain continues across two connections on the same home', async () => {
    const home = tempHome();
    const server = await openStore(home);
    const cli = await openStore(home);
    const serverLog = createAuditLog(server, home);
    const cliLog = createAuditLog(cli, home);

    for (let i = 0; i < 3; i++) {
      serverLog.record({ action: 'auth.login', actor: 'user:alice', ip: '127.0.0.1' });
      cliLog.record({ action: 'key.create', actor: 'cli', target: `k${i}` });
    }

    const lines = fileLines(home);
    assert.equal(lines.length, 6);
    let prev = ZEROS;
    lines.forEach((line, index) => {
      const parsed = JSON.parse(line) as { seq: number; prev: string; actor: string };
      assert.equal(parsed.seq, index + 1);
      assert.equal(parsed.prev, prev);
      assert.equal(parsed.actor, index % 2 === 0 ? 'user:alice' : 'cli');
      prev = sha256Hex(line);
    });
    const rows = server.sqlite
      .prepare<[], { seq: number; line: string; hash: string }>(
        'select seq, line, hash from audit_entry order by seq',
      )
      .all();
    assert.deepEqual(
      rows.map((r) => r.line),
      lines,
    );
    assert.ok(rows.every((r) => r.hash === sha256Hex(r.line)));
    assert.deepEqual(verifyAudit(server, home), { ok: true, entries: 6 });
    assert.deepEqual(verifyAudit(cli, home), { ok: true, entries: 6 });
    await cli.close();
    await server.close();
  });

  test('concurrent writer processes never fork the chain', async () => {
    const home = tempHome();
    const store = await openStore(home);
    const writers = 4;
    const count = 100;
    const children = Array.from({ length: writers }, (_, writer) =>
      startWriter({ home, writer, count }),
    );
    await Promise.all(children.map((c) => c.ready));
    children.forEach((c) => c.go());
    await Promise.all(children.map((c) => c.done));
    const actors = listAuditEntries(store, { limit: writers * count }).map((e) => e.actor);
    assert.equal(new Set(actors).size, writers);
    assert.deepEqual(verifyAudit(store, home), { ok: true, entries: writers * count });
    await store.close();
  });

  test('lines have a fixed key order and audit.jsonl is created 0600', async () => {
    const home = tempHome();
    const store = await openStore(home);
    createAuditLog(store, home).record({
      action: 'upstream.add',
      actor: 'cli',
      target: 'ollama',
      ip: '127.0.0.1',
      requestId: 'req-1',
      details: { url: 'http://127.0.0.1:11434', name: 'ollama' },
    });
    assert.equal(statSync(join(home, 'audit.jsonl')).mode & 0o777, 0o600);
    const [line] = fileLines(home);
    assert.deepEqual(Object.keys(JSON.parse(line as string) as object), [
      'seq',
      'ts',
      'action',
      'actor',
      'target',
      'ip',
      'request_id',
      'details',
      'prev',
    ]);
    assert.match(line as string, /"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/);
    await store.close();
  });

  test('secrets never reach the log: unknown fields dropped, URLs cleaned, strings capped', async () => {
    const home = tempHome();
    const store = await openStore(home);
    const audit = createAuditLog(store, home);
    audit.record({
      action: 'upstream.add',
      actor: 'cli',
      target: 'https://bob:hunter2@example.test/v1',
      details: {
        name: 'remote',
        api_key: 'sk-live-SECRET1',
        password: 'SECRET2',
        authorization: 'Bearer SECRET3',
        token: 'SECRET4',
        secret: 'SECRET5',
        url: 'https://user:SECRET6@example.test/v1?api_key=SECRET7&model=x',
        reason: 'x'.repeat(2000),
        models: ['a', 'b'],
        rpm: 60,
      },
    });
    const text = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.doesNotMatch(text, /SECRET|hunter2|api_key"|password|authorization|"token"|"secret"/);
    const details = (JSON.parse(text) as { details: Record<string, unknown> }).details;
    assert.deepEqual(Object.keys(details), ['models', 'name', 'reason', 'rpm', 'url']);
    assert.equal(details.url, 'https://example.test/v1?api_key=[redacted]&model=x');
    assert.equal((details.reason as string).length, 501);
    assert.match(text, /"target":"https:\/\/example.test\/v1"/);
    assert.deepEqual(verifyAudit(store, home), { ok: true, entries: 1 });
    await store.close();
  });

  test('a malformed action is a programming error', async () => {
    const home = tempHome();
    const store = await openStore(home);
    const audit = createAuditLog(store, home);
    for (const action of ['', 'Key.Create', '1key', 'key create', 'k'.repeat(65)]) {
      assert.throws(() => audit.record({ action, actor: 'cli' }), /invalid audit action/);
    }
    assert.throws(() => audit.record({ action: 'key.create', actor: '' }), /actor/);
    assert.deepEqual(verifyAudit(store, home), { ok: true, entries: 0 });
    await store.close();
  });

  test('a failed file write leaves no database row behind', async () => {
    const home = tempHome();
    const store = await openStore(home);
    mkdirSync(join(home, 'audit.jsonl'));
    assert.throws(() => createAuditLog(store, home).record({ action: 'key.create', actor: 'cli' }));
    const count = store.sqlite.prepare('select count(*) from audit_entry').pluck().get();
    assert.equal(count, 0);
    await store.close();
  });

  test('an empty log with no file is intact', async () => {
    const home = tempHome();
    const store = await openStore(home);
    assert.deepEqual(verifyAudit(store, home), { ok: true, entries: 0 });
    writeFileSync(join(home, 'audit.jsonl'), '');
    assert.deepEqual(verifyAudit(store, home), { ok: true, entries: 0 });
    await store.close();
  });

  test('listing returns the newest entries first', async () => {
    const { store } = await seededHome(5);
    const entries = listAuditEntries(store, { limit: 2 });
    assert.deepEqual(
      entries.map((e) => [e.seq, e.action, e.actor, e.target]),
      [
        [5, 'key.create', 'cli', 'key-5'],
        [4, 'key.create', 'cli', 'key-4'],
      ],
    );
    assert.deepEqual(
      listAuditEntries(store, { limit: 10, beforeSeq: 3 }).map((e) => e.seq),
      [2, 1],
    );
    await store.close();
  });

  test('tampering: an edited line is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    lines[2] = (lines[2] as string).replace('"actor":"cli"', '"actor":"root"');
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 3, /edited line/);
    await store.close();
  });

  test('tampering: an edited last line is caught by the database copy', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    lines[4] = (lines[4] as string).replace('key-5', 'key-X');
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 5, /edited line/);
    await store.close();
  });

  test('tampering: an edited line with its prev rewritten is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    lines[1] = (lines[1] as string).replace(/"prev":"[0-9a-f]+"/, `"prev":"${'a'.repeat(64)}"`);
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 2, /prev hash does not match line 1/);
    await store.close();
  });

  test('tampering: a deleted line is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    lines.splice(2, 1);
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 3, /expected seq 3 but found 4/);
    await store.close();
  });

  test('tampering: a deleted line with the rest renumbered and re-chained is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home).map((l) => JSON.parse(l) as Record<string, unknown>);
    lines.splice(2, 1);
    let prev = ZEROS;
    const forged = lines.map((entry, index) => {
      const text = JSON.stringify({ ...entry, seq: index + 1, prev });
      prev = sha256Hex(text);
      return text;
    });
    writeLines(home, forged);
    assertBrokenAt(verifyAudit(store, home), 3, /edited line/);
    await store.close();
  });

  test('tampering: a reordered pair is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    [lines[1], lines[2]] = [lines[2] as string, lines[1] as string];
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 2, /expected seq 2 but found 3/);
    await store.close();
  });

  test('tampering: a file truncated at a line boundary is named', async () => {
    const { home, store } = await seededHome();
    writeLines(home, fileLines(home).slice(0, 3));
    const result = verifyAudit(store, home);
    assertBrokenAt(result, 4, /database holds 5 entries \(file truncated/);
    assert.equal(result.entries, 3);
    await store.close();
  });

  test('tampering: a file truncated mid-line is named', async () => {
    const { home, store } = await seededHome();
    const path = join(home, 'audit.jsonl');
    truncateSync(path, statSync(path).size - 10);
    assertBrokenAt(verifyAudit(store, home), 5, /incomplete last line/);
    await store.close();
  });

  test('tampering: a deleted file is reported', async () => {
    const { home, store } = await seededHome();
    writeFileSync(join(home, 'audit.jsonl'), '');
    assertBrokenAt(verifyAudit(store, home), 1, /database holds 5 entries/);
    await store.close();
  });

  test('tampering: an appended, correctly chained forged line is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    const forged = JSON.stringify({
      seq: 6,
      ts: new Date().toISOString(),
      action: 'key.revoke',
      actor: 'cli',
      prev: sha256Hex(lines[4] as string),
    });
    appendFileSync(join(home, 'audit.jsonl'), forged + '\n');
    assertBrokenAt(verifyAudit(store, home), 6, /not in the database/);
    await store.close();
  });

  test('tampering: a garbage line is named', async () => {
    const { home, store } = await seededHome();
    const lines = fileLines(home);
    lines[3] = 'not json';
    writeLines(home, lines);
    assertBrokenAt(verifyAudit(store, home), 4, /not a valid JSON object/);
    await store.close();
  });

  test('tampering: a database row that disagrees with the file is named', async () => {
    const { home, store } = await seededHome();
    // Only someone bypassing the append-only triggers can do this.
    store.sqlite.exec('drop trigger audit_entry_no_update');
    store.sqlite
      .prepare("update audit_entry set line = replace(line, 'key-2', 'key-Z') where seq = 2")
      .run();
    assertBrokenAt(verifyAudit(store, home), 2, /database row edited/);
    await store.close();
  });

  test('tampering: a database row the file lacks is named', async () => {
    const { home, store } = await seededHome();
    const line = JSON.stringify({ seq: 6, ts: 'x', action: 'a', actor: 'b', prev: ZEROS });
    store.sqlite
      .prepare(
        'insert into audit_entry (seq, ts, action, actor, line, hash, prev_hash) values (6, ?, ?, ?, ?, ?, ?)',
      )
      .run('x', 'a', 'b', line, sha256Hex(line), ZEROS);
    assertBrokenAt(verifyAudit(store, home), 6, /missing from the file/);
    await store.close();
  });
}
