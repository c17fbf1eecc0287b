import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createMeshClient,
  findGitRoot,
  type MeshClient,
  type PeerView,
} from '../../src/mesh/index.js';
import {
  runCli,
  spawnCli,
  startPalisade,
  tempHome,
  waitForOutput,
  type CliResult,
  type TestPalisade,
} from '../support/palisade.js';

/** The rows of an aligned table: one object per line, keyed by the lower-cased headers. */
function table(stdout: string): Array<Record<string, string>> {
  const [head, ...lines] = stdout.trimEnd().split('\n');
  const columns = (head ?? '').split(/ {2,}/).map((c) => c.toLowerCase());
  return lines.map((line) => {
    const cells = line.split(/ {2,}/);
    return Object.fromEntries(columns.map((c, i) => [c, cells[i] ?? '']));
  });
}

/** A failure the user can fix: exit 1, one line on standard error, no stack trace. */
function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, result.stderr);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^palisade: [^\n]+\n$/, 'one line');
  assert.match(result.stderr, pattern);
  assert.ok(!result.stderr.includes('    at '), 'no stack trace');
}

describe('palisade mesh', () => {
  let palisade: TestPalisade;
  let client: MeshClient;
  let home: string;
  let reviewer: PeerView;
  let builder: PeerView;
  let neighbour: PeerView;
  const here = process.cwd();
  const project = findGitRoot(here) ?? here;
  const elsewhere = join(tempHome('palisade-mesh-elsewhere-'), 'app');

  const mesh = (args: string[], input?: string) =>
    runCli(['mesh', ...args, '--home', home], input === undefined ? {} : { input });
  const operatorId = () => readFileSync(join(home, 'mesh-cli.peer'), 'utf8').trim();

  before(async () => {
    palisade = await startPalisade();
    home = palisade.home;
    client = createMeshClient({ home });
    ({ peer: reviewer } = await client.register({
      cwd: elsewhere,
      git_root: elsewhere,
      agent: 'codex',
      name: 'reviewer',
      summary: 'reviewing the parser',
    }));
    ({ peer: builder } = await client.register({
      cwd: elsewhere,
      agent: 'claude-code',
      name: 'builder',
    }));
    ({ peer: neighbour } = await client.register({
      cwd: here,
      git_root: findGitRoot(here),
      agent: 'aider',
      name: 'neighbour',
    }));
    await client.register({ cwd: elsewhere, name: 'twin' });
    await client.register({ cwd: elsewhere, name: 'twin' });
  });

  after(async () => {
    await palisade.close();
  });

  test('status, peers, bad peer names and no broker: read-only commands, run side by side', async () => {
    const [status, peers, peersJson, ambiguous, unknown, noBroker] = await Promise.all([
      mesh(['status']),
      mesh(['peers']),
      mesh(['peers', '--json']),
      mesh(['send', 'twin', 'hello?']),
      mesh(['send', 'nobody', 'hello?']),
      runCli(['mesh', 'status', '--home', tempHome()]),
    ]);

    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^broker +ok, http:\/\/127\.0\.0\.1:\d+$/m);
    assert.match(status.stdout, /^version +\d+\.\d+\.\d+/m);
    assert.match(status.stdout, /^uptime +\d+s$/m);
    assert.match(status.stdout, /^peers +5 online, 0 gone$/m);
    assert.match(status.stdout, /^messages +0 \(0 unread\)$/m);
    assert.match(status.stdout, /^claims +0$/m);
    assert.match(status.stdout, /^limits +.*peer_timeout=1m/m);

    assert.equal(peers.code, 0, peers.stderr);
    const rows = table(peers.stdout);
    assert.deepEqual(Object.keys(rows[0] ?? {}), [
      'id',
      'name',
      'agent',
      'presence',
      'status',
      'cwd',
      'git_root',
      'last_seen',
      'summary',
    ]);
    const row = rows.find((r) => r.name === 'reviewer');
    assert.deepEqual(row, {
      id: reviewer.id.slice(0, 8),
      name: 'reviewer',
      agent: 'codex',
      presence: 'online',
      status: 'active',
      cwd: elsewhere,
      git_root: elsewhere,
      last_seen: row?.last_seen,
      summary: 'reviewing the parser',
    });
    assert.match(row?.last_seen ?? '', /^\d+s ago$/);
    assert.equal(rows.length, 5, 'no operator yet: reading does not register the CLI');

    assert.equal(peersJson.code, 0, peersJson.stderr);
    const listed = JSON.parse(peersJson.stdout) as PeerView[];
    assert.deepEqual(listed.map((p) => p.name).sort(), [
      'builder',
      'neighbour',
      'reviewer',
      'twin',
      'twin',
    ]);
    assert.equal(listed.find((p) => p.name === 'builder')?.id, builder.id, 'full ids in JSON');

    assertOneLineError(ambiguous, /"twin" matches 2 peers: twin \([0-9a-f-]{36}, online, .*; twin/);
    assertOneLineError(
      unknown,
      /no peer with id or name "nobody"; `palisade mesh peers` lists them/,
    );
    assertOneLineError(noBroker, /no Palisade mesh broker is running for .*`palisade serve/);
  });

  test('doctor checks mesh.token and finds the running broker; with none, says so', async () => {
    const [running, none] = await Promise.all([
      runCli(['doctor', '--json', '--home', home]),
      runCli(['doctor', '--json', '--home', tempHome()]),
    ]);
    assert.equal(running.code, 0, running.stdout + running.stderr);
    const checks = JSON.parse(running.stdout) as Array<{
      status: string;
      check: string;
      detail: string;
    }>;
    const token = checks.find((c) => c.check === 'mesh.token');
    assert.deepEqual([token?.status, token?.detail], ['ok', 'mode 600']);
    assert.match(
      checks.find((c) => c.check === 'mesh')?.detail ?? '',
      /^broker answers at http:\/\/127\.0\.0\.1:\d+$/,
    );
    const idle = JSON.parse(none.stdout) as Array<{ check: string; detail: string }>;
    assert.match(idle.find((c) => c.check === 'mesh')?.detail ?? '', /no broker running/);
  });

  test('send by name and by id prefix, from one remembered operator peer', async () => {
    const byName = await mesh(['send', 'reviewer', 'the parser is yours']);
    assert.equal(byName.code, 0, byName.stderr);
    assert.match(byName.stdout, /^sent message #\d+ to reviewer \([0-9a-f]{8}\)\n$/);
    const file = join(home, 'mesh-cli.peer');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const id = operatorId();

    const byPrefix = await mesh(['send', builder.id.slice(0, 6), '-'], 'line one\nline two\n');
    assert.equal(byPrefix.code, 0, byPrefix.stderr);
    assert.match(byPrefix.stdout, /to builder/);
    assert.equal(operatorId(), id, 'the second run reuses the operator peer');

    const [toReviewer] = (await client.inbox(reviewer.id)).messages;
    assert.equal(toReviewer?.text, 'the parser is yours');
    assert.deepEqual(toReviewer?.from, { id, name: 'operator' });
    const [toBuilder] = (await client.inbox(builder.id)).messages;
    assert.equal(toBuilder?.text, 'line one\nline two', 'stdin without its final newline');
    assert.equal(toBuilder?.from.id, id);

    const { peers } = await client.peers();
    const operator = peers.find((p) => p.id === id);
    assert.equal(operator?.name, 'operator');
    assert.equal(operator?.agent, 'palisade-cli');
    assert.equal(operator?.cwd, here);

    // The broker's refusal is one line too: a message over 64 KB.
    const tooBig = await mesh(['send', 'reviewer', '-'], 'x'.repeat(70_000));
    assertOneLineError(tooBig, /text is 70000 bytes; the most a peer may send is 65536 bytes/);
  });

  test('peers --scope directory: relative to the operator, which sits here', async () => {
    const result = await mesh(['peers', '--scope', 'directory']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      table(result.stdout)
        .map((r) => r.name)
        .sort(),
      ['neighbour', 'operator'],
    );
  });

  test('broadcast reaches every other peer; an unregistered operator registers again', async () => {
    const before = operatorId();
    await client.unregister(before);
    const result = await mesh(['broadcast', 'standup in 5']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^broadcast message #\d+ to 5 peers \(machine\)\n$/);
    assert.notEqual(operatorId(), before, 'a new peer, remembered');
    for (const peer of [reviewer, builder, neighbour]) {
      const { messages } = await client.inbox(peer.id);
      const last = messages.at(-1);
      assert.equal(last?.text, 'standup in 5');
      assert.equal(last?.to, null);
      assert.equal(last?.from.id, operatorId());
    }
  });

  test('inbox shows messages to the operator and marks them read unless --keep-unread', async () => {
    const id = operatorId();
    await client.send(reviewer.id, id, 'done \u001b[2Jwith the parser');
    await client.send(builder.id, id, 'tests pass');

    const kept = await mesh(['inbox', '--keep-unread']);
    assert.equal(kept.code, 0, kept.stderr);
    const rows = table(kept.stdout);
    assert.deepEqual(Object.keys(rows[0] ?? {}), ['id', 'from', 'sent_at', 'text']);
    assert.deepEqual(
      rows.map((r) => [r.from, r.text]),
      [
        [`reviewer (${reviewer.id.slice(0, 8)})`, 'done \\u001b[2Jwith the parser'],
        [`builder (${builder.id.slice(0, 8)})`, 'tests pass'],
      ],
    );
    assert.ok(!kept.stdout.includes('\u001b'), 'escape sequences are shown, not sent');
    assert.equal((await client.inbox(id)).messages.length, 2, 'still unread');

    const read = await mesh(['inbox']);
    assert.equal(read.code, 0, read.stderr);
    assert.equal(table(read.stdout).length, 2);
    assert.equal((await client.inbox(id)).messages.length, 0, 'now read');

    const all = await mesh(['inbox', '--all', '--json']);
    assert.equal(all.code, 0, all.stderr);
    const messages = JSON.parse(all.stdout) as Array<{ text: string; read_at: string | null }>;
    assert.deepEqual(
      messages.map((m) => m.text),
      ['done \u001b[2Jwith the parser', 'tests pass'],
    );
    assert.ok(messages.every((m) => typeof m.read_at === 'string'));
  });

  test('state set, get, list and delete, seen by the other peers', async () => {
    const other = join(elsewhere, 'other-project');
    await client.stateSet(reviewer.id, project, 'owner', 'reviewer');
    await client.stateSet(builder.id, other, 'ci', 'green');

    const set = await mesh(['state', 'set', 'plan', 'step 1: parser']);
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, `set "plan" in ${project}\n`);
    const { entry } = await client.stateGet(project, 'plan');
    assert.equal(entry.value, 'step 1: parser');
    assert.equal(entry.set_by.name, 'operator');

    const [get, list, missing] = await Promise.all([
      mesh(['state', 'get', 'owner']),
      mesh(['state', 'list', '--project', other, '--json']),
      mesh(['state', 'get', 'nothing']),
    ]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, 'reviewer\n');
    assert.equal(list.code, 0, list.stderr);
    const entries = JSON.parse(list.stdout) as Array<{ key: string; value: string }>;
    assert.deepEqual(
      entries.map((e) => [e.key, e.value]),
      [['ci', 'green']],
    );
    assertOneLineError(missing, /no key "nothing" in project .*palisade mesh state list/);

    const deleted = await mesh(['state', 'delete', 'plan']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(deleted.stdout, `deleted "plan" from ${project}\n`);
    const { entries: left } = await client.stateList(project);
    assert.deepEqual(
      left.map((e) => e.key),
      ['owner'],
    );
  });

  test('locks lists live file claims; events --json lists everything without message text', async () => {
    const path = join(elsewhere, 'src', 'parser.ts');
    await client.claim(reviewer.id, path);
    const [locks, events] = await Promise.all([mesh(['locks']), mesh(['events', '--json'])]);

    assert.equal(locks.code, 0, locks.stderr);
    const [claim, ...rest] = table(locks.stdout);
    assert.equal(rest.length, 0);
    assert.equal(claim?.path, path);
    assert.equal(claim?.holder, 'reviewer');
    assert.equal(claim?.peer, reviewer.id.slice(0, 8));
    assert.ok(Date.parse(claim?.expires_at ?? '') > Date.now());

    assert.equal(events.code, 0, events.stderr);
    const list = JSON.parse(events.stdout) as Array<{ seq: number; type: string }>;
    const types = new Set(list.map((e) => e.type));
    for (const type of [
      'peer.joined',
      'peer.left',
      'message.sent',
      'state.changed',
      'file.claimed',
    ]) {
      assert.ok(types.has(type), type);
    }
    assert.deepEqual(
      list.map((e) => e.seq),
      [...list.map((e) => e.seq)].sort((a, b) => a - b),
      'oldest first',
    );
    assert.ok(!events.stdout.includes('the parser is yours'), 'the operator sees no message text');
  });

  test('events --follow prints new events as they happen and exits 0 on SIGINT', async () => {
    const { events } = await client.events({});
    const last = events.at(-1)?.seq ?? 0;
    const child = spawnCli([
      'mesh',
      'events',
      '--follow',
      '--since',
      String(last - 1),
      '--home',
      home,
    ]);
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      // The last event before the start is replayed first; the new one comes over the stream.
      await waitForOutput(child, new RegExp(`#${last} `));
      await sleep(500);
      await client.update(builder.id, { status: 'busy' });
      const line = await waitForOutput(child, /peer\.status +builder is now busy/);
      assert.ok(line);
      child.kill('SIGINT');
      const [code] = await once(child, 'exit');
      assert.equal(code, 0);
      assert.equal(stderr, '');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
