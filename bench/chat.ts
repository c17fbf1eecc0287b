/**
 * `npm run bench:chat`: what the web chat adds to a streamed answer. The mock upstream and a
 * built Palisade run in their own processes; this process is the client. The same streamed
 * chat completion is measured three ways, side by side in one run:
 *
 * - direct: `POST /v1/chat/completions` to the mock upstream itself;
 * - gateway: the same through Palisade's `/v1` (no key, loopback);
 * - chat: `POST /api/conversations/:id/messages` as the web app sends it (session cookie,
 *   Origin, X-Requested-With), which also stores the question and the answer.
 *
 * Reported: time to the first content token and to the end of the answer (median and p95 of
 * sequential requests), and answers per second with 20 at once; ratios against direct.
 * Flags: --no-build (use dist/ as it is), --requests N (sequential, default 200).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { percentile } from './lib/stats.js';

const { values } = parseArgs({
  options: {
    'no-build': { type: 'boolean', default: false },
    requests: { type: 'string', default: '200' },
  },
});
const SEQUENTIAL = Number(values.requests);
const CONCURRENT = 20;
const ROUNDS = 10;
const PASSWORD = 'a long bench passphrase 1';
const children: ChildProcess[] = [];

function start(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (chunk: Buffer) => {
      seen += chunk.toString();
      const port =
        /"port":(\d+)/.exec(seen)?.[1] ?? /listening on http:\/\/[^:]+:(\d+)/.exec(seen)?.[1];
      if (port !== undefined) resolve(port);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${command} exited with ${code}: ${seen}`)));
  });
}

interface Timing {
  firstToken: number;
  total: number;
}

/** Sends one streamed request and times the first content token and the end. */
async function timed(url: string, init: RequestInit, isToken: (data: string) => boolean) {
  const began = performance.now();
  const response = await fetch(url, init);
  if (!response.ok || !response.body) throw new Error(`${url}: ${response.status}`);
  let firstToken = 0;
  const decoder = new TextDecoder();
  for await (const chunk of response.body) {
    if (firstToken === 0 && isToken(decoder.decode(chunk as Uint8Array, { stream: true }))) {
      firstToken = performance.now() - began;
    }
  }
  return { firstToken, total: performance.now() - began };
}

const completion = JSON.stringify({
  model: 'mock-small',
  stream: true,
  messages: [{ role: 'user', content: 'Say hello' }],
});
const openAiToken = (data: string) => data.includes('"content"');
const chatToken = (data: string) => data.includes('"type":"delta"');

async function main() {
  if (!values['no-build']) spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
  const home = mkdtempSync(join(tmpdir(), 'palisade-bench-chat-'));
  const mockPort = await start(
    process.execPath,
    ['--import', 'tsx', 'bench/mock-server.ts', '--port', '0', '--chunk-delay-ms', '2'],
    process.env,
  );
  const env = {
    ...process.env,
    PALISADE_HOME: home,
    PALISADE_PORT: '0',
    PALISADE_UPSTREAMS: `mock=http://127.0.0.1:${mockPort}`,
    PALISADE_PROBE_LOCAL: 'false',
    PALISADE_MESH: 'false',
    PALISADE_LOG_LEVEL: 'warn',
    PALISADE_CHAT_RATE: '100000',
    PALISADE_CHAT_BURST: '100000',
    PALISADE_API_RATE: '100000',
    PALISADE_API_BURST: '100000',
    PALISADE_RATE_LIMIT: '100000',
    PALISADE_RATE_BURST: '100000',
    PALISADE_MAX_STREAMS: '1000',
    PALISADE_PASSWORD: PASSWORD,
  };
  const cli = join('dist', 'cli', 'index.js');
  spawnSync(process.execPath, [cli, 'users', 'create', 'bench', '--admin'], { env });
  const port = await start(process.execPath, [cli, 'serve'], {
    ...env,
    PALISADE_LOG_LEVEL: 'info',
  });
  const palisade = `http://127.0.0.1:${port}`;

  const signIn = await fetch(`${palisade}/api/auth/login`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-requested-with': 'palisade',
      origin: palisade,
    },
    body: JSON.stringify({ username: 'bench', password: PASSWORD }),
  });
  const cookie = (signIn.headers.getSetCookie()[0] ?? '').split(';')[0] ?? '';
  const web = {
    'content-type': 'application/json',
    'x-requested-with': 'palisade',
    origin: palisade,
    cookie,
  };
  async function conversation(): Promise<string> {
    const created = await fetch(`${palisade}/api/conversations`, {
      method: 'POST',
      headers: web,
      body: JSON.stringify({ model: 'mock-small' }),
    });
    return ((await created.json()) as { id: string }).id;
  }

  const ready: string[] = [];
  for (let i = 0; i < 20 + SEQUENTIAL + CONCURRENT * ROUNDS; i += 1) {
    ready.push(await conversation());
  }

  type Target = { name: string; once: () => Promise<Timing> };
  const post = { method: 'POST', headers: { 'content-type': 'application/json' } };
  const targets: Target[] = [
    {
      name: 'direct',
      once: () =>
        timed(
          `http://127.0.0.1:${mockPort}/v1/chat/completions`,
          { ...post, body: completion },
          openAiToken,
        ),
    },
    {
      name: 'gateway /v1',
      once: () =>
        timed(`${palisade}/v1/chat/completions`, { ...post, body: completion }, openAiToken),
    },
    {
      name: 'chat /api',
      once: async () => {
        // A fresh conversation per answer (so prompts do not grow), made before the clock runs.
        const id = ready.pop() ?? (await conversation());
        return timed(
          `${palisade}/api/conversations/${id}/messages`,
          { method: 'POST', headers: web, body: JSON.stringify({ content: 'Say hello' }) },
          chatToken,
        );
      },
    },
  ];

  const rows: string[][] = [];
  const figures: Record<string, { first: number; total: number; p95: number; rate: number }> = {};
  for (const target of targets) {
    for (let i = 0; i < 20; i += 1) await target.once(); // warm-up
    const timings: Timing[] = [];
    for (let i = 0; i < SEQUENTIAL; i += 1) timings.push(await target.once());
    const began = performance.now();
    for (let round = 0; round < ROUNDS; round += 1) {
      await Promise.all(Array.from({ length: CONCURRENT }, () => target.once()));
    }
    const rate = (CONCURRENT * ROUNDS) / ((performance.now() - began) / 1000);
    const first = percentile(
      timings.map((t) => t.firstToken),
      50,
    );
    const total = percentile(
      timings.map((t) => t.total),
      50,
    );
    const p95 = percentile(
      timings.map((t) => t.total),
      95,
    );
    figures[target.name] = { first, total, p95, rate };
  }
  const direct = figures.direct as { first: number; total: number; rate: number };
  for (const [name, f] of Object.entries(figures)) {
    rows.push([
      name,
      f.first.toFixed(2),
      f.total.toFixed(2),
      f.p95.toFixed(2),
      f.rate.toFixed(0),
      (f.total / direct.total).toFixed(2),
      (f.rate / direct.rate).toFixed(2),
    ]);
  }
  const header = [
    'target',
    'first token ms (p50)',
    'answer ms (p50)',
    'answer ms (p95)',
    `answers/s (${CONCURRENT} at once)`,
    'answer time vs direct',
    'answers/s vs direct',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  console.log(
    [
      `streamed chat answers: ${SEQUENTIAL} sequential, then ${ROUNDS} rounds of ${CONCURRENT} at once (mock: 5 chunks, 2 ms apart)`,
      '',
      line(header),
      line(widths.map((w) => '-'.repeat(w))),
      ...rows.map(line),
    ].join('\n'),
  );
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGTERM');
}
