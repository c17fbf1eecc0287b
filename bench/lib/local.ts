/**
 * The embedded GGUF model (upstream `local`, src/local/) with a tiny model the bench writes
 * itself: generation speed in this process with node-llama-cpp against the same generation
 * through a real `palisade serve`, then 20 requests at once against the request queue at two
 * parallelisms and with a short queue.
 */
import { existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  ChatWrapper,
  Llama,
  LlamaCompletion,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
} from 'node-llama-cpp';
import { Client, Pool } from 'undici';
import { writeTinyGguf } from '../../test/fixtures/gguf.js';
import { freePort, spawnLogged, stopProcess, waitForHttp, type Child } from './processes.js';
import type { Goal, Machine } from './results.js';
import { markdownTable, textTable } from './results.js';
import { percentile, round } from './stats.js';
import { cleanEnv, createKey, PALISADE_CLI, type BenchContext } from './targets.js';

export interface LocalSettings {
  /** Trained context of the generated model, and PALISADE_LOCAL_CONTEXT. */
  contextLength: number;
  /** Tokens/s of one request at a time, the three paths taking turns. */
  generation: { maxTokens: number; rounds: number; warmup: number };
  /** `requests` at once, once per entry of `parallel`, then once with `queueLimit`. */
  burst: {
    requests: number;
    maxTokens: number;
    /**
     * max_tokens of the short-queue burst: long enough that the first answer is still being
     * generated when the last request arrives, so the refusals do not depend on speed.
     */
    queueMaxTokens: number;
    /** Bursts per configuration; latencies are pooled, wall time and tokens/s are medians. */
    rounds: number;
    parallel: number[];
    queueLimit: number;
    /** How often /metrics is read during a burst. */
    pollMs: number;
  };
}

export const GENERATION_PATHS = ['direct', 'completions', 'directChat', 'chatStream'] as const;
export type GenerationPath = (typeof GENERATION_PATHS)[number];

const PATH_LABELS: Record<GenerationPath, string> = {
  direct: 'direct: LlamaCompletion in the bench process',
  completions: 'palisade /v1/completions',
  directChat: 'direct: LlamaChat in the bench process',
  chatStream: 'palisade /v1/chat/completions, streaming',
};

export interface GenerationRound {
  tokens: number;
  ms: number;
  tokensPerSecond: number;
  /** To the first piece of generated text; null where the answer is not streamed. */
  firstTokenMs: number | null;
}

export interface GenerationRun {
  rounds: GenerationRound[];
  medianTokensPerSecond: number;
  medianMs: number;
  medianFirstTokenMs: number | null;
  errors: number;
  /** The text of the first round, to compare greedy answers between paths. */
  text: string;
}

export interface BurstRun {
  label: string;
  parallel: number;
  queueLimit: number;
  requests: number;
  maxTokens: number;
  rounds: number;
  /** Answers by status over all rounds (`error` for a request that got none). */
  statuses: Record<string, number>;
  ok: number;
  non200: number;
  refused503: number;
  /** 503 answers that carried a Retry-After header. */
  withRetryAfter: number;
  /** Send to the whole body, over every 200 answer of every round. */
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  /** First send to the last answer read, median over the rounds. */
  wallMs: number;
  /** Completion tokens of the 200 answers over the wall time, median over the rounds. */
  tokensPerSecond: number;
  tokens: number;
  /** palisade_local_generated_tokens_total grew by this much (cancelled ones included). */
  metricTokens: number | null;
  /** Highest palisade_local_queued / palisade_local_running seen polling /metrics. */
  peakQueued: number;
  peakRunning: number;
  metricSamples: number;
  firstProblem?: string;
}

export interface LocalFigures {
  /** Why nothing was measured; null when something was. */
  skipped: string | null;
  date: string;
  mode: 'full' | 'quick';
  machine: Pick<Machine, 'cpu' | 'cores' | 'node' | 'loadAverageAtStart' | 'loadAverageAtEnd'>;
  settings: LocalSettings;
  model: { bytes: number; contextLength: number } | null;
  generation: Partial<Record<GenerationPath, GenerationRun>>;
  /** Tokens/s of one path over another's, medians. */
  ratios: {
    completionsOverDirect: number | null;
    chatStreamOverDirect: number | null;
    chatStreamOverDirectChat: number | null;
  };
  bursts: BurstRun[];
  checks: Goal[];
  /** Failures noted while measuring (also in the run's `problems`). */
  problems: string[];
}

export function emptyLocalFigures(
  mode: 'full' | 'quick',
  machine: Machine,
  settings: LocalSettings,
): LocalFigures {
  return {
    skipped: 'not run',
    date: new Date().toISOString(),
    mode,
    machine: {
      cpu: machine.cpu,
      cores: machine.cores,
      node: machine.node,
      loadAverageAtStart: os.loadavg().map((l) => round(l)),
      loadAverageAtEnd: [],
    },
    settings,
    model: null,
    generation: {},
    ratios: {
      completionsOverDirect: null,
      chatStreamOverDirect: null,
      chatStreamOverDirectChat: null,
    },
    bursts: [],
    checks: [],
    problems: [],
  };
}

const PROMPT = 'Once upon a time';
const MODEL_ID = 'tiny';
/** The embedded model on this machine's CPU, as the issue asks: one thread, no GPU. */
const THREADS = 1;
/** PALISADE_LOCAL_QUEUE's default. */
const DEFAULT_QUEUE = 64;

const median = (values: number[]) => percentile(values, 50);

// ---------------------------------------------------------------- direct, in this process

interface DirectModel {
  llama: Llama;
  model: LlamaModel;
  context: LlamaContext;
  sequence: LlamaContextSequence;
  completion: LlamaCompletion;
  /** Resolved once: with the default `auto`, each new LlamaChat renders the model's template. */
  chatWrapper: ChatWrapper;
  close(): Promise<void>;
}

/** The model loaded here as the engine loads it: prebuilt CPU binary, one thread, one sequence. */
async function loadDirect(modelPath: string, contextSize: number): Promise<DirectModel> {
  const { getLlama, LlamaCompletion, LlamaLogLevel, resolveChatWrapper } =
    await import('node-llama-cpp');
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.warn,
    maxThreads: THREADS,
  });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize, threads: THREADS });
  const sequence = context.getSequence();
  const completion = new LlamaCompletion({ contextSequence: sequence, autoDisposeSequence: false });
  return {
    llama,
    model,
    context,
    sequence,
    completion,
    chatWrapper: resolveChatWrapper(model),
    async close() {
      completion.dispose();
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

async function generateDirect(
  direct: DirectModel,
  maxTokens: number,
): Promise<GenerationRound & { text: string }> {
  const { sequence } = direct;
  const before = sequence.tokenMeter.getState().usedOutputTokens;
  let first: number | undefined;
  const start = performance.now();
  const result = await direct.completion.generateCompletionWithMeta(PROMPT, {
    maxTokens,
    temperature: 0,
    onTextChunk: () => {
      first ??= performance.now();
    },
  });
  return measuredRound(
    sequence.tokenMeter.getState().usedOutputTokens - before,
    start,
    first,
    result.response,
  );
}

/** A direct generation's figures, timed from `start` to now. */
function measuredRound(
  tokens: number,
  start: number,
  first: number | undefined,
  text: string,
): GenerationRound & { text: string } {
  const ms = performance.now() - start;
  return {
    tokens,
    ms: round(ms, 3),
    tokensPerSecond: round((tokens * 1000) / ms, 1),
    firstTokenMs: first === undefined ? null : round(first - start, 3),
    text,
  };
}

/** One chat answer as the engine makes it (a new LlamaChat on the sequence), text streamed. */
async function generateDirectChat(
  direct: DirectModel,
  maxTokens: number,
): Promise<GenerationRound & { text: string }> {
  const { LlamaChat } = await import('node-llama-cpp');
  const { sequence } = direct;
  const before = sequence.tokenMeter.getState().usedOutputTokens;
  let first: number | undefined;
  const start = performance.now();
  const chat = new LlamaChat({
    contextSequence: sequence,
    autoDisposeSequence: false,
    chatWrapper: direct.chatWrapper,
  });
  try {
    const result = await chat.generateResponse(
      [
        { type: 'user', text: PROMPT },
        { type: 'model', response: [] },
      ],
      {
        maxTokens,
        temperature: 0,
        onTextChunk: () => {
          first ??= performance.now();
        },
      },
    );
    return measuredRound(
      sequence.tokenMeter.getState().usedOutputTokens - before,
      start,
      first,
      result.response,
    );
  } finally {
    chat.dispose({ disposeSequence: false });
  }
}

// ---------------------------------------------------------------- palisade serve

interface LocalServe {
  origin: string;
  headers: Record<string, string>;
  child: Child;
}

function serveEnv(
  modelPath: string,
  contextLength: number,
  parallel: number,
  queueLimit: number,
): NodeJS.ProcessEnv {
  return cleanEnv({
    PALISADE_PROBE_LOCAL: 'false',
    PALISADE_LOG_LEVEL: 'info',
    // Limits too high to throttle 20 requests at once, still evaluated on every request.
    PALISADE_RATE_LIMIT: '100000000',
    PALISADE_RATE_BURST: '1000000',
    PALISADE_MODELS: modelPath,
    // Only the generated file: nothing from the home's models folder.
    PALISADE_LOCAL: 'false',
    PALISADE_LOCAL_PARALLEL: String(parallel),
    PALISADE_LOCAL_QUEUE: String(queueLimit),
    PALISADE_LOCAL_CONTEXT: String(contextLength),
    PALISADE_LOCAL_THREADS: String(THREADS),
    PALISADE_LOCAL_GPU: 'false',
  });
}

/**
 * `palisade serve` from dist/ serving only `modelPath`, one home for every configuration
 * (each serve is stopped before the next starts); waits for /healthz and the model's listing.
 */
async function startServe(
  ctx: BenchContext,
  modelPath: string,
  settings: LocalSettings,
  parallel: number,
  queueLimit: number,
  keyFor: (env: NodeJS.ProcessEnv) => string,
): Promise<LocalServe> {
  const env = serveEnv(modelPath, settings.contextLength, parallel, queueLimit);
  const key = keyFor(env);
  const home = join(ctx.workDir, 'local-home');
  const port = await freePort();
  const name = `local-p${parallel}-q${queueLimit}`;
  const child = spawnLogged(
    name,
    process.execPath,
    [PALISADE_CLI, 'serve', '--home', home, '--port', String(port)],
    { cwd: ctx.root, env, logPath: join(ctx.workDir, `${name}.log`) },
  );
  const origin = `http://127.0.0.1:${port}`;
  await waitForHttp(`${origin}/healthz`, child);
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const client = new Client(origin);
  try {
    const res = await client.request({ path: '/v1/models', method: 'GET', headers });
    const text = await res.body.text();
    if (res.statusCode !== 200 || !text.includes(`"${MODEL_ID}"`)) {
      throw new Error(`/v1/models answered ${res.statusCode} without ${MODEL_ID}: ${text}`);
    }
  } finally {
    await client.close();
  }
  return { origin, headers, child };
}

interface Answer {
  status: number;
  retryAfter: string | undefined;
  text: string;
  tokens: number;
  ms: number;
}

async function postJson(
  pool: Pool | Client,
  serve: LocalServe,
  path: string,
  body: object,
): Promise<Answer> {
  const start = performance.now();
  const res = await pool.request({
    path,
    method: 'POST',
    headers: serve.headers,
    body: JSON.stringify(body),
    headersTimeout: 120_000,
    bodyTimeout: 120_000,
  });
  const raw = await res.body.text();
  const ms = performance.now() - start;
  const header = res.headers['retry-after'];
  let text = '';
  let tokens = 0;
  if (res.statusCode === 200) {
    const parsed = JSON.parse(raw) as {
      choices?: Array<{ text?: string; message?: { content?: string } }>;
      usage?: { completion_tokens?: number };
    };
    const choice = parsed.choices?.[0];
    text = choice?.text ?? choice?.message?.content ?? '';
    tokens = parsed.usage?.completion_tokens ?? 0;
  } else {
    text = raw.slice(0, 300);
  }
  return {
    status: res.statusCode,
    retryAfter: Array.isArray(header) ? header[0] : header,
    text,
    tokens,
    ms,
  };
}

function asRound(answer: Answer, what: string): GenerationRound & { text: string } {
  if (answer.status !== 200) throw new Error(`${what} answered ${answer.status}: ${answer.text}`);
  return {
    tokens: answer.tokens,
    ms: round(answer.ms, 3),
    tokensPerSecond: round((answer.tokens * 1000) / answer.ms, 1),
    firstTokenMs: null,
    text: answer.text,
  };
}

async function generateCompletions(
  client: Client,
  serve: LocalServe,
  maxTokens: number,
): Promise<GenerationRound & { text: string }> {
  const body = { model: MODEL_ID, prompt: PROMPT, max_tokens: maxTokens, temperature: 0 };
  return asRound(await postJson(client, serve, '/v1/completions', body), '/v1/completions');
}

/** A streamed chat answer read to `[DONE]`; tokens from the usage chunk. */
async function generateChatStream(
  client: Client,
  serve: LocalServe,
  maxTokens: number,
): Promise<GenerationRound & { text: string }> {
  const start = performance.now();
  const res = await client.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: serve.headers,
    body: JSON.stringify({
      model: MODEL_ID,
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  if (res.statusCode !== 200) {
    throw new Error(`streaming chat answered ${res.statusCode}: ${await res.body.text()}`);
  }
  let first: number | undefined;
  let buffered = '';
  let text = '';
  let tokens: number | undefined;
  let done = false;
  for await (const chunk of res.body) {
    buffered += (chunk as Buffer).toString('utf8');
    let end = buffered.indexOf('\n');
    while (end !== -1) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      end = buffered.indexOf('\n');
      if (!line.startsWith('data:')) continue;
      const data = line.slice(5).trim();
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const event = JSON.parse(data) as {
        choices?: Array<{ delta?: { content?: string } }>;
        usage?: { completion_tokens?: number } | null;
      };
      const piece = event.choices?.[0]?.delta?.content;
      if (piece) {
        first ??= performance.now();
        text += piece;
      }
      if (event.usage?.completion_tokens !== undefined) tokens = event.usage.completion_tokens;
    }
  }
  const ms = performance.now() - start;
  if (!done) throw new Error('the chat stream ended without data: [DONE]');
  if (tokens === undefined) throw new Error('the chat stream sent no usage');
  return {
    tokens,
    ms: round(ms, 3),
    tokensPerSecond: round((tokens * 1000) / ms, 1),
    firstTokenMs: first === undefined ? null : round(first - start, 3),
    text,
  };
}

// ---------------------------------------------------------------- metrics

async function readMetrics(client: Client): Promise<Map<string, number>> {
  const res = await client.request({ path: '/metrics', method: 'GET' });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`);
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('palisade_local_')) continue;
    const name = line.slice(0, line.search(/[{ ]/));
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    // Counters with labels are summed over them.
    if (Number.isFinite(value)) values.set(name, (values.get(name) ?? 0) + value);
  }
  return values;
}

// ---------------------------------------------------------------- measurements

function summarize(rounds: Array<GenerationRound & { text: string }>, errors: number) {
  const firsts = rounds.flatMap((r) => (r.firstTokenMs === null ? [] : [r.firstTokenMs]));
  const run: GenerationRun = {
    rounds: rounds.map(({ text: _text, ...r }) => r),
    medianTokensPerSecond: round(median(rounds.map((r) => r.tokensPerSecond)), 1),
    medianMs: round(median(rounds.map((r) => r.ms)), 3),
    medianFirstTokenMs: firsts.length === 0 ? null : round(median(firsts), 3),
    errors,
    text: rounds[0]?.text ?? '',
  };
  return run;
}

/** One request at a time on each path, the paths taking turns round by round. */
async function measureGeneration(
  serve: LocalServe,
  direct: DirectModel | undefined,
  settings: LocalSettings,
  figures: LocalFigures,
  note: (message: string) => void,
): Promise<void> {
  const { maxTokens, rounds, warmup } = settings.generation;
  const client = new Client(serve.origin, { pipelining: 0 });
  const runners: Record<
    GenerationPath,
    (() => Promise<GenerationRound & { text: string }>) | null
  > = {
    direct: direct === undefined ? null : () => generateDirect(direct, maxTokens),
    completions: () => generateCompletions(client, serve, maxTokens),
    directChat: direct === undefined ? null : () => generateDirectChat(direct, maxTokens),
    chatStream: () => generateChatStream(client, serve, maxTokens),
  };
  const samples = new Map<GenerationPath, Array<GenerationRound & { text: string }>>();
  const errors = new Map<GenerationPath, number>();
  try {
    for (let round = 0; round < warmup + rounds; round++) {
      for (const path of GENERATION_PATHS) {
        const run = runners[path];
        if (run === null) continue;
        try {
          const sample = await run();
          if (round < warmup) continue;
          samples.set(path, [...(samples.get(path) ?? []), sample]);
          console.log(
            `  round ${round - warmup + 1} ${path.padEnd(11)} ${sample.tokens} tokens  ` +
              `${sample.tokensPerSecond.toFixed(0)} tokens/s` +
              (sample.firstTokenMs === null ? '' : `  first ${sample.firstTokenMs.toFixed(2)} ms`),
          );
        } catch (error) {
          errors.set(path, (errors.get(path) ?? 0) + 1);
          note(`local ${path}: ${(error as Error).message}`);
        }
      }
    }
  } finally {
    await client.close();
  }
  for (const path of GENERATION_PATHS) {
    const list = samples.get(path);
    if (list !== undefined) figures.generation[path] = summarize(list, errors.get(path) ?? 0);
  }
  const g = figures.generation;
  const over = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined || b <= 0 ? null : round(a / b, 3);
  figures.ratios = {
    completionsOverDirect: over(
      g.completions?.medianTokensPerSecond,
      g.direct?.medianTokensPerSecond,
    ),
    chatStreamOverDirect: over(
      g.chatStream?.medianTokensPerSecond,
      g.direct?.medianTokensPerSecond,
    ),
    chatStreamOverDirectChat: over(
      g.chatStream?.medianTokensPerSecond,
      g.directChat?.medianTokensPerSecond,
    ),
  };
}

interface BurstSample {
  answers: Answer[];
  errors: string[];
  wallMs: number;
  peakQueued: number;
  peakRunning: number;
  metricSamples: number;
  pollProblem: string | undefined;
  metricTokens: number | null;
}

/** `requests` chat completions sent at once, /metrics polled until the last is answered. */
async function burstOnce(
  serve: LocalServe,
  settings: LocalSettings,
  maxTokens: number,
): Promise<BurstSample> {
  const { requests, pollMs } = settings.burst;
  const pool = new Pool(serve.origin, { connections: requests, pipelining: 0 });
  const metrics = new Client(serve.origin);
  try {
    // Open the connections first, so the burst does not also time connecting.
    await Promise.all(
      Array.from({ length: requests }, () =>
        pool.request({ path: '/healthz', method: 'GET' }).then((r) => r.body.dump()),
      ),
    );
    const tokensBefore = (await readMetrics(metrics)).get('palisade_local_generated_tokens_total');
    let finished = false;
    let peakQueued = 0;
    let peakRunning = 0;
    let metricSamples = 0;
    const errors: string[] = [];
    let pollProblem: string | undefined;
    // Caught here: a rejection left for the `await` after the burst would crash the run first.
    const poller = (async () => {
      while (!finished) {
        const values = await readMetrics(metrics);
        peakQueued = Math.max(peakQueued, values.get('palisade_local_queued') ?? 0);
        peakRunning = Math.max(peakRunning, values.get('palisade_local_running') ?? 0);
        metricSamples += 1;
        await sleep(pollMs);
      }
    })().catch((error: Error) => {
      pollProblem = `polling /metrics: ${error.message}`;
    });
    const start = performance.now();
    const settled = await Promise.all(
      Array.from({ length: requests }, (_, i) =>
        postJson(pool, serve, '/v1/chat/completions', {
          model: MODEL_ID,
          messages: [{ role: 'user', content: `${PROMPT}, request ${i + 1}` }],
          max_tokens: maxTokens,
          temperature: 0,
        }).catch((error: Error) => {
          errors.push(error.message);
          return undefined;
        }),
      ),
    );
    const wallMs = performance.now() - start;
    finished = true;
    await poller;
    const tokensAfter = (await readMetrics(metrics)).get('palisade_local_generated_tokens_total');
    return {
      answers: settled.filter((a): a is Answer => a !== undefined),
      errors,
      wallMs,
      peakQueued,
      peakRunning,
      metricSamples,
      pollProblem,
      metricTokens:
        tokensBefore === undefined || tokensAfter === undefined ? null : tokensAfter - tokensBefore,
    };
  } finally {
    await Promise.all([pool.close(), metrics.close()]);
  }
}

async function measureBurst(
  serve: LocalServe,
  settings: LocalSettings,
  parallel: number,
  queueLimit: number,
  maxTokens: number,
): Promise<BurstRun> {
  const samples: BurstSample[] = [];
  for (let i = 0; i < settings.burst.rounds; i++) {
    samples.push(await burstOnce(serve, settings, maxTokens));
  }
  const answers = samples.flatMap((s) => s.answers);
  const ok = answers.filter((a) => a.status === 200);
  const statuses: Record<string, number> = {};
  for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
  const errors = samples.flatMap((s) => s.errors);
  if (errors.length > 0) statuses.error = errors.length;
  const refused = answers.filter((a) => a.status === 503);
  const latencies = ok.map((a) => a.ms);
  const perSecond = samples.map(
    (s) =>
      (s.answers.filter((a) => a.status === 200).reduce((n, a) => n + a.tokens, 0) * 1000) /
      s.wallMs,
  );
  const metricTokens = samples.map((s) => s.metricTokens);
  const problem =
    errors[0] ??
    samples.find((s) => s.pollProblem !== undefined)?.pollProblem ??
    answers.find((a) => a.status !== 200 && a.status !== 503)?.text ??
    undefined;
  return {
    label: `parallel ${parallel}, queue ${queueLimit}`,
    parallel,
    queueLimit,
    requests: settings.burst.requests,
    maxTokens,
    rounds: samples.length,
    statuses,
    ok: ok.length,
    non200: answers.length - ok.length + errors.length,
    refused503: refused.length,
    withRetryAfter: refused.filter((a) => a.retryAfter !== undefined).length,
    p50Ms: round(percentile(latencies, 50), 1),
    p95Ms: round(percentile(latencies, 95), 1),
    maxMs: round(Math.max(...latencies), 1),
    wallMs: round(median(samples.map((s) => s.wallMs)), 1),
    tokensPerSecond: round(median(perSecond), 1),
    tokens: ok.reduce((n, a) => n + a.tokens, 0),
    metricTokens: metricTokens.includes(null)
      ? null
      : metricTokens.reduce<number>((n, t) => n + (t ?? 0), 0),
    peakQueued: Math.max(...samples.map((s) => s.peakQueued)),
    peakRunning: Math.max(...samples.map((s) => s.peakRunning)),
    metricSamples: samples.reduce((n, s) => n + s.metricSamples, 0),
    ...(problem === undefined ? {} : { firstProblem: problem }),
  };
}

function check(name: string, value: number | null, expected: number): Goal {
  return {
    name,
    value,
    limit: `= ${expected}`,
    result: value === null ? 'n/a' : value === expected ? 'pass' : 'miss',
  };
}

/** What the queue must do, whatever the machine: pass or miss, not a speed. */
export function judgeLocal(figures: LocalFigures): void {
  const checks: Goal[] = [];
  const { requests } = figures.settings.burst;
  for (const burst of figures.bursts) {
    if (burst.parallel + burst.queueLimit >= requests) {
      checks.push(check(`non-200 answers, ${burst.label}`, burst.non200, 0));
    } else {
      const refused = Math.max(0, requests - burst.parallel - burst.queueLimit) * burst.rounds;
      checks.push(check(`503 answers, ${burst.label}`, burst.refused503, refused));
      checks.push(
        check(`503 answers with Retry-After, ${burst.label}`, burst.withRetryAfter, refused),
      );
      checks.push(
        check(`other non-200 answers, ${burst.label}`, burst.non200 - burst.refused503, 0),
      );
    }
  }
  const { direct, completions } = figures.generation;
  if (direct !== undefined && completions !== undefined) {
    checks.push(
      check(
        'greedy text: /v1/completions equals direct (1 = same)',
        direct.text === completions.text ? 1 : 0,
        1,
      ),
    );
  }
  const { directChat, chatStream } = figures.generation;
  if (directChat !== undefined && chatStream !== undefined) {
    checks.push(
      check(
        'greedy text: streamed chat equals direct chat (1 = same)',
        directChat.text === chatStream.text ? 1 : 0,
        1,
      ),
    );
  }
  figures.checks = checks;
}

/**
 * Writes the model, loads it here, then one `palisade serve` per configuration, each stopped
 * before the next: parallel 1 (generation and its burst), the other parallelisms, and the
 * short queue. A failure is noted and the next configuration still runs.
 */
export async function measureLocal(
  ctx: BenchContext,
  settings: LocalSettings,
  figures: LocalFigures,
  note: (message: string) => void,
): Promise<void> {
  if (!existsSync(join(ctx.root, PALISADE_CLI))) {
    throw new Error(`${PALISADE_CLI} is missing: run npm run build`);
  }
  const dir = join(ctx.workDir, 'local-models');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const modelPath = join(dir, `${MODEL_ID}.gguf`);
  const bytes = writeTinyGguf(modelPath, { contextLength: settings.contextLength });
  figures.model = { bytes, contextLength: settings.contextLength };
  figures.skipped = null;

  let key: string | undefined;
  const keyFor = (env: NodeJS.ProcessEnv) =>
    (key ??= createKey(ctx, join(ctx.workDir, 'local-home'), env, 'bench-local'));

  let direct: DirectModel | undefined;
  try {
    direct = await loadDirect(modelPath, settings.contextLength);
  } catch (error) {
    note(`local direct: node-llama-cpp did not load the model here: ${(error as Error).message}`);
  }

  const { generation: g, burst: b } = settings;
  const configurations = [
    ...b.parallel.map((parallel, i) => ({
      parallel,
      queue: DEFAULT_QUEUE,
      maxTokens: b.maxTokens,
      generation: i === 0,
    })),
    { parallel: 1, queue: b.queueLimit, maxTokens: b.queueMaxTokens, generation: false },
  ];
  for (const { parallel, queue, maxTokens, generation } of configurations) {
    let serve: LocalServe | undefined;
    try {
      serve = await startServe(ctx, modelPath, settings, parallel, queue, keyFor);
      console.log(
        `  palisade serve, PALISADE_LOCAL_PARALLEL=${parallel} PALISADE_LOCAL_QUEUE=${queue} (pid ${serve.child.pid})`,
      );
      // Loads the model, so nothing measured includes the load.
      const warm = new Client(serve.origin);
      try {
        await generateCompletions(warm, serve, 8);
        await generateChatStream(warm, serve, 8);
      } catch (error) {
        throw new Error(`warm-up request: ${(error as Error).message}`);
      } finally {
        await warm.close();
      }
      if (generation) {
        console.log(
          `  generation: ${g.maxTokens} tokens per request, one at a time, ${g.warmup} warm-up and ${g.rounds} measured rounds`,
        );
        await measureGeneration(serve, direct, settings, figures, note);
        await direct?.close();
        direct = undefined;
      }
      const burst = await measureBurst(serve, settings, parallel, queue, maxTokens);
      figures.bursts.push(burst);
      if (burst.firstProblem !== undefined)
        note(`local burst ${burst.label}: ${burst.firstProblem}`);
      console.log(
        `  burst of ${b.requests} x ${maxTokens} tokens, ${burst.label}: ` +
          `${JSON.stringify(burst.statuses)}  p50 ${burst.p50Ms} ms  p95 ${burst.p95Ms} ms  ` +
          `wall ${burst.wallMs} ms  ${burst.tokensPerSecond.toFixed(0)} tokens/s  peak queued ${burst.peakQueued}`,
      );
    } catch (error) {
      note(`local parallel ${parallel}, queue ${queue}: ${(error as Error).message}`);
    } finally {
      if (serve !== undefined) await stopProcess(serve.child.process);
    }
  }
  await direct?.close();
}

// ---------------------------------------------------------------- report

type Row = [string, ...string[]];

function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const GENERATION_HEADER: Row = [
  'local generation, one request at a time',
  'tokens',
  'tokens/s (median)',
  'tokens/s (min-max)',
  'request ms (median)',
  'first token ms (median)',
  'tokens/s vs direct completion',
  'tokens/s vs direct chat',
];

function generationRows(figures: LocalFigures): Row[] {
  const g = figures.generation;
  const r = figures.ratios;
  const ratioCells: Record<GenerationPath, [number | null, number | null]> = {
    direct: [g.direct === undefined ? null : 1, null],
    completions: [r.completionsOverDirect, null],
    directChat: [
      g.directChat === undefined || g.direct === undefined
        ? null
        : g.directChat.medianTokensPerSecond / g.direct.medianTokensPerSecond,
      g.directChat === undefined ? null : 1,
    ],
    chatStream: [r.chatStreamOverDirect, r.chatStreamOverDirectChat],
  };
  return GENERATION_PATHS.map((path) => {
    const run = g[path];
    const rates = run?.rounds.map((round) => round.tokensPerSecond) ?? [];
    const [overCompletion, overChat] = ratioCells[path];
    return [
      PATH_LABELS[path],
      fmt(run?.rounds[0]?.tokens),
      fmt(run?.medianTokensPerSecond),
      run === undefined ? '-' : `${fmt(Math.min(...rates))}-${fmt(Math.max(...rates))}`,
      fmt(run?.medianMs, 1),
      fmt(run?.medianFirstTokenMs, 2),
      fmt(overCompletion, 3),
      fmt(overChat, 3),
    ];
  });
}

const BURST_HEADER: Row = [
  'local burst',
  'answers by status',
  'non-200',
  '503 with Retry-After',
  'p50 ms',
  'p95 ms',
  'max ms',
  'wall ms',
  'tokens/s (all)',
  'peak queued',
  'peak running',
];

function burstRows(figures: LocalFigures): Row[] {
  return figures.bursts.map((b) => [
    `${b.requests} at once x ${b.maxTokens} tokens, ${b.label}`,
    Object.entries(b.statuses)
      .map(([status, count]) => `${status}: ${count}`)
      .join(', '),
    fmt(b.non200),
    b.refused503 === 0 ? '-' : `${b.withRetryAfter} / ${b.refused503}`,
    fmt(b.p50Ms),
    fmt(b.p95Ms),
    fmt(b.maxMs),
    fmt(b.wallMs),
    fmt(b.tokensPerSecond),
    fmt(b.peakQueued),
    fmt(b.peakRunning),
  ]);
}

const CHECK_HEADER: Row = ['local check', 'value', 'expected', 'result'];

function localTables(figures: LocalFigures, table: (header: Row, rows: Row[]) => string): string {
  const m = figures.machine;
  const s = figures.settings;
  const intro =
    `Embedded model: a generated tiny llama GGUF (${fmt(figures.model?.bytes)} bytes, context ` +
    `${s.contextLength}), PALISADE_LOCAL_THREADS=1, PALISADE_LOCAL_GPU=false; the bench client ` +
    `shares the machine's ${m.cores} cores. Run of ${figures.date.slice(0, 10)} (${figures.mode}) ` +
    `on ${m.cpu}, node ${m.node}; load average ${m.loadAverageAtStart.join(' ')} at start, ` +
    `${m.loadAverageAtEnd.join(' ')} at end.`;
  if (figures.skipped !== null) return `${intro}\n\nSkipped: ${figures.skipped}`;
  const rounds = s.burst.rounds === 1 ? 'one burst' : `${s.burst.rounds} bursts`;
  return [
    intro,
    '',
    `Generation: ${s.generation.maxTokens} tokens, temperature 0, median of ${s.generation.rounds} rounds after ${s.generation.warmup} warm-up.`,
    '',
    table(GENERATION_HEADER, generationRows(figures)),
    '',
    `Bursts: ${rounds} per configuration (latencies pooled; wall time and tokens/s are medians).`,
    '',
    table(BURST_HEADER, burstRows(figures)),
    '',
    table(
      CHECK_HEADER,
      figures.checks.map((c) => [c.name, fmt(c.value), c.limit, c.result]),
    ),
    ...(figures.problems.length > 0
      ? ['', 'Problems:', ...figures.problems.map((p) => `- ${p}`)]
      : []),
  ].join('\n');
}

export const localReport = (figures: LocalFigures) => localTables(figures, textTable);
export const localMarkdown = (figures: LocalFigures) => localTables(figures, markdownTable);
