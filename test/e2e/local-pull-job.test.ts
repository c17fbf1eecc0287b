import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { tinyGguf } from '../fixtures/gguf.js';
import { startPalisade, type TestPalisade } from '../support/palisade.js';
import { eventually, FAST_SCRYPT_ENV, newSignedInUser } from '../support/web.js';

/*
 * The whole story with no model server anywhere: an admin starts the built-in
 * model-download job from the web API, the model lands in PALISADE_HOME/models, the running
 * server serves it as the upstream `local`, and an OpenAI client chats with it.
 */

describe('no model server: pull a model as a job, then chat with it', () => {
  let files: Server;
  let filesUrl: string;
  let palisade: TestPalisade;
  const model = tinyGguf({ name: 'pulled' });

  before(async () => {
    files = createServer((request, response) => {
      if (request.url !== '/models/pulled.gguf') return void response.writeHead(404).end();
      response.writeHead(200, { 'content-length': model.length });
      response.end(model);
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    palisade = await startPalisade({
      env: {
        ...FAST_SCRYPT_ENV,
        PALISADE_LOCAL_GPU: 'false',
        PALISADE_LOCAL_THREADS: '1',
        PALISADE_API_BURST: '100000',
        // The models must appear through the job's end, not through a health check.
        PALISADE_HEALTH_INTERVAL: '1h',
      },
    });
  });
  after(async () => {
    await palisade.close();
    await new Promise((resolve) => files.close(resolve));
  });

  test('the job downloads the model and the server serves it', async () => {
    const openai = new OpenAI({ apiKey: 'unused', baseURL: `${palisade.url}/v1`, maxRetries: 0 });
    assert.deepEqual((await openai.models.list()).data, [], 'no model before the pull');

    const admin = await newSignedInUser(palisade, 'root', 'admin');
    const started = await admin.post('/api/admin/jobs/runs', {
      template: 'model-download',
      params: { url: `${filesUrl}/models/pulled.gguf` },
    });
    assert.equal(started.status, 201, started.text);
    const id = (started.body as { run: { id: string } }).run.id;
    const run = await eventually(async () => {
      const response = await admin.get(`/api/admin/jobs/runs/${id}`);
      assert.equal(response.status, 200, response.text);
      const got = response.body as {
        run: { status: string; progress: number | null; reason: string | null };
      };
      return ['succeeded', 'failed', 'cancelled'].includes(got.run.status) ? got.run : undefined;
    });
    const log = await admin.get(`/api/admin/jobs/runs/${id}/log`);
    assert.equal(run.status, 'succeeded', `${run.reason}\n${log.text}`);
    assert.equal(run.progress, 100);
    assert.match(log.text, /progress: 100\.0%/);
    assert.ok(existsSync(join(palisade.home, 'models', 'pulled.gguf')));

    const listed = await eventually(async () => {
      const ids = (await openai.models.list()).data.map((m) => m.id);
      return ids.length > 0 ? ids : undefined;
    });
    assert.deepEqual(listed, ['pulled']);
    const answer = await openai.chat.completions.create({
      model: 'pulled',
      messages: [{ role: 'user', content: 'Hello' }],
      max_tokens: 5,
    });
    assert.equal(answer.usage?.completion_tokens, 5);
  });
});
