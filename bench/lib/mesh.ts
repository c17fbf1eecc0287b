/**
 * The agent mesh broker (`/mesh/*` in `palisade serve`) under load from 10 peers in this
 * process: each peer registers, holds its SSE stream open and sends direct messages over a
 * keep-alive undici Pool. Delivery is what counts: a message is done when its frame arrives on
 * the recipient's stream, timed with `performance.now()` in this process at both ends.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Pool, request } from 'undici';
import {
  readCpuSeconds,
  readMachineBusySeconds,
  spawnLogged,
  stopProcess,
  type Child,
} from './processes.js';
import type { Goal, Machine } from './results.js';
import { goal, markdownTable, textTable } from './results.js';
import { percentile, round } from './stats.js';

/** A percentile of millisecond figures, to the microsecond. */
const percentileMs = (values: number[], p: number) => round(percentile(values, p), 3);
import { cleanEnv, PALISADE_CLI, type BenchContext } from './targets.js';

/**
 * Per-peer requests per 10 s for the broker under test. The default (100) would throttle
 * every peer to 10 requests/s, so the limit, not the broker, would be measured; at this value
 * the limiter still runs on every request.
 */
export const MESH_RATE_LIMIT = 10_000_000;

export interface MeshSettings {
  peers: number;
  /** Unmeasured messages first, at the middle concurrency, so the JIT has warmed up. */
  warmupMessages: number;
  throughput: {
    /** Messages per run; one run per entry of `concurrencyPerPeer`. */
    messages: number;
    /** Requests in flight per peer in each run. */
    concurrencyPerPeer: number[];
    /** A run stops sending after this long and waits at most `drainMs` more for deliveries. */
    timeoutMs: number;
  };
  /** Paced direct messages, open loop: one run per rate (messages/s over all peers). */
  latency: { rates: number[]; seconds: number };
  /** Paced broadcasts, each to every other peer. */
  broadcast: { rate: number; seconds: number };
  /** Most time any phase waits for the last deliveries after it stopped sending. */
  drainMs: number;
  /** Text of every message: a tag and a sequence number, padded to this many bytes. */
  textBytes: number;
  /** Start the broker under `node --cpu-prof` (profile in the kept temporary directory). */
  cpuProfile: boolean;
}

export interface MeshThroughputRun {
  concurrencyPerPeer: number;
  /** Requests in flight over all peers. */
  inFlight: number;
  messages: number;
  accepted: number;
  /** Answers other than 201 (a 429 would mean the rate limit, not the broker, was hit). */
  rejected: number;
  errors: number;
  delivered: number;
  duplicates: number;
  /** First send to the last delivery seen on a recipient's stream. */
  seconds: number;
  deliveredPerSecond: number;
  /** First send to the last 201 answer. */
  acceptedPerSecond: number;
  /** CPU time (user + system) of the broker process per delivered message. */
  serverCpuUsPerMessage: number;
  /** CPU time of this process (all 10 peers) per delivered message. */
  clientCpuUsPerMessage: number;
  /** Broker CPU over wall time: 1.0 is one core busy all the time. */
  serverCores: number;
  /** CPU of everything else on the machine (not the broker, not this process), in cores. */
  otherCores: number;
  firstProblem?: string;
}

export interface MeshLatencyRun {
  /** Messages per second asked for, over all peers. */
  rate: number;
  /** Messages per second actually sent. */
  sentPerSecond: number;
  sent: number;
  delivered: number;
  errors: number;
  /** Just before the POST to the frame arriving on the recipient's SSE stream. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU of everything else on the machine during the run, in cores. */
  otherCores: number;
  firstProblem?: string;
}

export interface MeshBroadcastRun {
  rate: number;
  broadcasts: number;
  recipients: number;
  /** Broadcasts that reached every recipient. */
  complete: number;
  errors: number;
  /** Just before the POST to the frame arriving on the last of the recipients' streams. */
  lastP50Ms: number;
  lastP99Ms: number;
  lastMaxMs: number;
  /** The same for every single delivery, whichever recipient. */
  eachP50Ms: number;
  eachP99Ms: number;
  firstProblem?: string;
}

export interface MeshFigures {
  /** Why the mesh was not measured; null when it was. */
  skipped: string | null;
  date: string;
  mode: 'full' | 'quick';
  peers: number;
  rateLimitPer10s: number;
  machine: Pick<Machine, 'cpu' | 'cores' | 'node' | 'loadAverageAtStart' | 'loadAverageAtEnd'>;
  settings: Omit<MeshSettings, 'cpuProfile'>;
  throughput: MeshThroughputRun[];
  latency: MeshLatencyRun[];
  broadcast: MeshBroadcastRun | null;
  goals: Goal[];
  /** Failures noted while measuring (also in the run's `problems`). */
  problems: string[];
}

/** Other load (cores) above which a run is reported as disturbed. */
const DISTURBED_CORES = 0.25;

/** Targets from the mesh issue. */
export const MESH_GOALS = { deliveredPerSecond: 5000, p99Ms: 10 } as const;

export function emptyMeshFigures(mode: 'full' | 'quick', machine: Machine): MeshFigures {
  return {
    skipped: 'not run',
    date: new Date().toISOString(),
    mode,
    peers: 0,
    rateLimitPer10s: MESH_RATE_LIMIT,
    machine: {
      cpu: machine.cpu,
      cores: machine.cores,
      node: machine.node,
      loadAverageAtStart: os.loadavg().map((l) => round(l)),
      loadAverageAtEnd: [],
    },
    settings: {} as MeshFigures['settings'],
    throughput: [],
    latency: [],
    broadcast: null,
    goals: [],
    problems: [],
  };
}

// ---------------------------------------------------------------- broker process

export interface MeshBrokerProcess {
  origin: string;
  token: string;
  pid: number;
  child: Child;
  home: string;
}

function hasExited(child: Child): boolean {
  return child.process.exitCode !== null || child.process.signalCode !== null;
}

function readTrimmed(path: string): string | undefined {
  if (!existsSync(path)) return undefined;
  return readFileSync(path, 'utf8').trim() || undefined;
}

/**
 * `palisade serve` from dist/ with a fresh home, on 127.0.0.1 and a port the system picks;
 * the broker's URL and token are read from the home's `mesh.url` and `mesh.token`.
 */
export async function startMeshBroker(
  ctx: BenchContext,
  options: { cpuProfile: boolean; timeoutMs?: number },
): Promise<MeshBrokerProcess> {
  if (!existsSync(join(ctx.root, PALISADE_CLI))) {
    throw new Error(`${PALISADE_CLI} is missing: run npm run build`);
  }
  const home = join(ctx.workDir, 'mesh-home');
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const env = cleanEnv({
    PALISADE_PROBE_LOCAL: 'false',
    PALISADE_LOG_LEVEL: 'warn',
    PALISADE_MESH: 'true',
    PALISADE_MESH_RATE_LIMIT: String(MESH_RATE_LIMIT),
  });
  const profile = options.cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${ctx.workDir}`] : [];
  const args = [...profile, PALISADE_CLI, 'serve', '--home', home, '--host', '127.0.0.1'];
  const child = spawnLogged('mesh', process.execPath, [...args, '--port', '0'], {
    cwd: ctx.root,
    env,
    logPath: join(ctx.workDir, 'mesh.log'),
  });
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  let last = 'no mesh.url yet';
  while (Date.now() < deadline) {
    if (hasExited(child)) throw new Error('palisade serve (mesh) exited before it was ready');
    const url = readTrimmed(join(home, 'mesh.url'));
    const token = readTrimmed(join(home, 'mesh.token'));
    if (url !== undefined && token !== undefined) {
      if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) throw new Error(`unexpected mesh.url ${url}`);
      try {
        const res = await request(`${url}/mesh/health`, {
          headersTimeout: 2000,
          bodyTimeout: 2000,
        });
        await res.body.dump();
        if (res.statusCode === 200) return { origin: url, token, pid: child.pid, child, home };
        last = `/mesh/health answered ${res.statusCode}`;
      } catch (error) {
        last = (error as Error).message;
      }
    }
    await sleep(100);
  }
  throw new Error(
    `the mesh broker was not ready after ${options.timeoutMs ?? 30_000} ms (${last})`,
  );
}

// ---------------------------------------------------------------- peers and their streams

/** What a phase does with each message frame a recipient's stream delivers. */
type FrameSink = (peer: number, seq: number, at: number) => void;

interface Peer {
  index: number;
  id: string;
  /** Keep-alive connections for this peer's POSTs. */
  pool: Pool;
  /** The one connection holding this peer's SSE stream. */
  stream: Client;
  /** Direct messages this peer has sent, for round-robin recipients. */
  sent: number;
}

interface Mesh {
  broker: MeshBrokerProcess;
  peers: Peer[];
  headers: Record<string, string>;
  /** Frames whose text carries this tag go to `sink`; others are counted as stray. */
  tag: string;
  sink: FrameSink;
  stray: number;
  streamErrors: string[];
  abort: AbortController;
}

/**
 * Reads SSE frames (`id:`, `event:`, `data:` lines, a blank line after each) from one stream;
 * `event: message` frames carry the message as JSON in `data`, with the bench's tag and
 * sequence number at the start of `.message.text`.
 */
function readFrames(mesh: Mesh, peer: number, chunks: AsyncIterable<string>): Promise<void> {
  let buffer = '';
  const onFrame = (frame: string, at: number): void => {
    let event = 'message';
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data += line.slice(5).trimStart();
    }
    if (event !== 'message' || data === '') return;
    let parsed: { message?: { id?: number; text?: string } };
    try {
      parsed = JSON.parse(data) as typeof parsed;
    } catch {
      mesh.stray++;
      return;
    }
    const text = parsed.message?.text;
    if (typeof text !== 'string' || typeof parsed.message?.id !== 'number') return;
    const space = text.indexOf(' ');
    const second = text.indexOf(' ', space + 1);
    const tag = text.slice(0, space);
    const seq = Number(text.slice(space + 1, second === -1 ? undefined : second));
    if (tag === mesh.tag && Number.isInteger(seq)) mesh.sink(peer, seq, at);
    else mesh.stray++;
  };
  return (async () => {
    for await (const chunk of chunks) {
      // One timestamp per chunk, taken before any frame in it is parsed.
      const at = performance.now();
      buffer += chunk;
      let end = buffer.indexOf('\n\n');
      while (end !== -1) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!frame.startsWith(':') && !frame.startsWith('retry:')) onFrame(frame, at);
        end = buffer.indexOf('\n\n');
      }
    }
  })();
}

async function postJson(
  pool: Pool,
  headers: Record<string, string>,
  path: string,
  body: unknown,
): Promise<{ status: number; text: string }> {
  const res = await pool.request({
    path,
    method: 'POST',
    headers,
    body: JSON.stringify(body),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  if (res.statusCode === 201) {
    await res.body.dump();
    return { status: 201, text: '' };
  }
  return { status: res.statusCode, text: (await res.body.text()).slice(0, 200) };
}

/** Registers `count` peers and opens their streams; resolves once every stream is subscribed. */
async function connectPeers(
  broker: MeshBrokerProcess,
  count: number,
  connectionsPerPeer: number,
): Promise<Mesh> {
  const headers = {
    authorization: `Bearer ${broker.token}`,
    'content-type': 'application/json',
  };
  const mesh: Mesh = {
    broker,
    peers: [],
    headers,
    tag: '',
    sink: () => undefined,
    stray: 0,
    streamErrors: [],
    abort: new AbortController(),
  };
  for (let index = 0; index < count; index++) {
    const pool = new Pool(broker.origin, {
      connections: connectionsPerPeer,
      keepAliveTimeout: 60_000,
    });
    const stream = new Client(broker.origin, { keepAliveTimeout: 60_000 });
    const peer: Peer = { index, id: '', pool, stream, sent: 0 };
    mesh.peers.push(peer);
    const res = await pool.request({
      path: '/mesh/peers',
      method: 'POST',
      headers,
      body: JSON.stringify({ cwd: `/bench/mesh/peer-${index}`, agent: 'bench' }),
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    });
    const text = await res.body.text();
    if (res.statusCode !== 201) {
      throw new Error(`POST /mesh/peers answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    peer.id = (JSON.parse(text) as { peer: { id: string } }).peer.id;
  }
  for (const peer of mesh.peers) {
    const res = await peer.stream.request({
      path: `/mesh/events/stream?peer_id=${peer.id}`,
      method: 'GET',
      headers: { authorization: headers.authorization, accept: 'text/event-stream' },
      headersTimeout: 10_000,
      bodyTimeout: 0,
      signal: mesh.abort.signal,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      throw new Error(`GET /mesh/events/stream answered ${res.statusCode}: ${text.slice(0, 200)}`);
    }
    // The broker subscribes before it writes the headers, so nothing sent from now is missed.
    res.body.setEncoding('utf8');
    readFrames(mesh, peer.index, res.body as AsyncIterable<string>).catch((error: unknown) => {
      if (!mesh.abort.signal.aborted) {
        mesh.streamErrors.push(`stream of peer ${peer.index}: ${(error as Error).message}`);
      }
    });
  }
  return mesh;
}

async function closeMesh(mesh: Mesh): Promise<void> {
  mesh.abort.abort();
  await Promise.all(
    mesh.peers.flatMap((peer) => [
      peer.pool.destroy().catch(() => undefined),
      peer.stream.destroy().catch(() => undefined),
    ]),
  );
}

/** The next recipient of `peer`'s direct messages: each other peer in turn. */
function nextRecipient(mesh: Mesh, peer: Peer): Peer {
  const n = mesh.peers.length;
  const offset = 1 + (peer.sent++ % (n - 1));
  return mesh.peers[(peer.index + offset) % n] as Peer;
}

function messageText(settings: MeshSettings, tag: string, seq: number): string {
  const head = `${tag} ${seq} `;
  return head + 'x'.repeat(Math.max(0, settings.textBytes - head.length));
}

/** Waits (5 ms steps) until `done()` or `deadline` (a performance.now() time). */
async function waitUntil(done: () => boolean, deadline: number): Promise<void> {
  const steps = Math.ceil(Math.max(0, deadline - performance.now()) / 5) + 1;
  for (let i = 0; i < steps && !done() && performance.now() < deadline; i++) await sleep(5);
}

/** CPU used during a phase by the broker, this process, and everything else, in seconds. */
function cpuMeter(brokerPid: number): () => {
  wallSeconds: number;
  broker: number;
  client: number;
  other: number;
} {
  const start = performance.now();
  const broker = readCpuSeconds(brokerPid);
  const client = process.cpuUsage();
  const machine = readMachineBusySeconds();
  return () => {
    const brokerSeconds = readCpuSeconds(brokerPid) - broker;
    const used = process.cpuUsage(client);
    const clientSeconds = (used.user + used.system) / 1e6;
    const machineSeconds = readMachineBusySeconds() - machine;
    return {
      wallSeconds: (performance.now() - start) / 1000,
      broker: brokerSeconds,
      client: clientSeconds,
      other: Math.max(0, machineSeconds - brokerSeconds - clientSeconds),
    };
  };
}

let phaseCounter = 0;
function newTag(prefix: string): string {
  phaseCounter += 1;
  return `${prefix}${phaseCounter}`;
}

// ---------------------------------------------------------------- throughput

async function measureThroughputRun(
  mesh: Mesh,
  settings: MeshSettings,
  messages: number,
  perPeer: number,
): Promise<MeshThroughputRun> {
  const tag = newTag('t');
  const seenAt = new Float64Array(messages);
  let delivered = 0;
  let duplicates = 0;
  let lastSeen = 0;
  mesh.tag = tag;
  mesh.sink = (_peer, seq, at) => {
    if (seq < 0 || seq >= messages) return;
    if (seenAt[seq] !== 0) {
      duplicates++;
      return;
    }
    seenAt[seq] = at;
    delivered++;
    lastSeen = at;
  };
  let next = 0;
  let accepted = 0;
  let rejected = 0;
  let errors = 0;
  let lastAccepted = 0;
  let firstProblem: string | undefined;
  const meter = cpuMeter(mesh.broker.pid);
  const start = performance.now();
  const stopSending = start + settings.throughput.timeoutMs;
  const worker = async (peer: Peer): Promise<void> => {
    while (next < messages && performance.now() < stopSending) {
      const seq = next++;
      const to = nextRecipient(mesh, peer);
      const text = messageText(settings, tag, seq);
      try {
        const res = await postJson(peer.pool, mesh.headers, '/mesh/messages', {
          from: peer.id,
          to: to.id,
          text,
        });
        if (res.status === 201) {
          accepted++;
          lastAccepted = performance.now();
        } else {
          rejected++;
          firstProblem ??= `POST /mesh/messages answered ${res.status}: ${res.text}`;
        }
      } catch (error) {
        errors++;
        firstProblem ??= `POST /mesh/messages: ${(error as Error).message}`;
      }
    }
  };
  await Promise.all(
    mesh.peers.flatMap((peer) => Array.from({ length: perPeer }, () => worker(peer))),
  );
  await waitUntil(() => delivered >= accepted, performance.now() + settings.drainMs);
  const cpu = meter();
  if (delivered < accepted) {
    firstProblem ??= `${accepted - delivered} accepted messages never reached their recipient's stream`;
  }
  const seconds = (lastSeen - start) / 1000;
  return {
    concurrencyPerPeer: perPeer,
    inFlight: perPeer * mesh.peers.length,
    messages,
    accepted,
    rejected,
    errors,
    delivered,
    duplicates,
    seconds: round(seconds, 3),
    deliveredPerSecond: seconds > 0 ? Math.round(delivered / seconds) : 0,
    acceptedPerSecond:
      lastAccepted > start ? Math.round(accepted / ((lastAccepted - start) / 1000)) : 0,
    serverCpuUsPerMessage: round((cpu.broker * 1e6) / Math.max(1, delivered), 1),
    clientCpuUsPerMessage: round((cpu.client * 1e6) / Math.max(1, delivered), 1),
    serverCores: round(cpu.broker / cpu.wallSeconds, 2),
    otherCores: round(cpu.other / cpu.wallSeconds, 2),
    ...(firstProblem === undefined ? {} : { firstProblem }),
  };
}

// ---------------------------------------------------------------- paced latency

/**
 * Open loop: message k goes out at `start + k / rate`, whether or not earlier ones were
 * answered (at most `maxInFlight` outstanding), so a slow answer delays no later send.
 */
async function pacedSend(
  total: number,
  rate: number,
  seconds: number,
  maxInFlight: number,
  send: (k: number) => Promise<void>,
): Promise<{ sent: number; elapsedMs: number }> {
  const start = performance.now();
  const stopAt = start + seconds * 1000 + 2000;
  const pending = new Set<Promise<void>>();
  let k = 0;
  // Every tick sleeps at least 1 ms, so this many outlast `stopAt`.
  const maxTicks = seconds * 1000 + 2001;
  for (let tick = 0; tick < maxTicks && k < total && performance.now() < stopAt; tick++) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    while (k < due && pending.size < maxInFlight) {
      const p: Promise<void> = send(k++).finally(() => pending.delete(p));
      pending.add(p);
    }
    await sleep(1);
  }
  const elapsedMs = performance.now() - start;
  await Promise.all(pending);
  return { sent: k, elapsedMs };
}

async function measureLatencyRun(
  mesh: Mesh,
  settings: MeshSettings,
  rate: number,
): Promise<MeshLatencyRun> {
  const tag = newTag('l');
  const total = Math.round(rate * settings.latency.seconds);
  const sentAt = new Float64Array(total);
  const latencies: number[] = [];
  const seen = new Uint8Array(total);
  mesh.tag = tag;
  mesh.sink = (_peer, seq, at) => {
    if (seq < 0 || seq >= total || seen[seq] === 1) return;
    seen[seq] = 1;
    latencies.push(at - (sentAt[seq] as number));
  };
  let errors = 0;
  let accepted = 0;
  let firstProblem: string | undefined;
  const meter = cpuMeter(mesh.broker.pid);
  const { sent, elapsedMs } = await pacedSend(
    total,
    rate,
    settings.latency.seconds,
    1000,
    async (k) => {
      const peer = mesh.peers[k % mesh.peers.length] as Peer;
      const to = nextRecipient(mesh, peer);
      const body = { from: peer.id, to: to.id, text: messageText(settings, tag, k) };
      sentAt[k] = performance.now();
      try {
        const res = await postJson(peer.pool, mesh.headers, '/mesh/messages', body);
        if (res.status === 201) accepted++;
        else {
          errors++;
          firstProblem ??= `POST /mesh/messages answered ${res.status}: ${res.text}`;
        }
      } catch (error) {
        errors++;
        firstProblem ??= `POST /mesh/messages: ${(error as Error).message}`;
      }
    },
  );
  await waitUntil(() => latencies.length >= accepted, performance.now() + settings.drainMs);
  const cpu = meter();
  if (latencies.length < accepted) {
    firstProblem ??= `${accepted - latencies.length} accepted messages never arrived`;
  }
  return {
    rate,
    sentPerSecond: Math.round(sent / (elapsedMs / 1000)),
    sent,
    delivered: latencies.length,
    errors,
    p50Ms: percentileMs(latencies, 50),
    p90Ms: percentileMs(latencies, 90),
    p99Ms: percentileMs(latencies, 99),
    maxMs: percentileMs(latencies, 100),
    otherCores: round(cpu.other / cpu.wallSeconds, 2),
    ...(firstProblem === undefined ? {} : { firstProblem }),
  };
}

// ---------------------------------------------------------------- broadcast

async function measureBroadcast(mesh: Mesh, settings: MeshSettings): Promise<MeshBroadcastRun> {
  const { rate, seconds } = settings.broadcast;
  const tag = newTag('b');
  const total = Math.round(rate * seconds);
  const recipients = mesh.peers.length - 1;
  const sentAt = new Float64Array(total);
  const arrivals = new Uint8Array(total);
  const lastAt = new Float64Array(total);
  const each: number[] = [];
  mesh.tag = tag;
  mesh.sink = (_peer, seq, at) => {
    if (seq < 0 || seq >= total) return;
    arrivals[seq] = (arrivals[seq] as number) + 1;
    lastAt[seq] = Math.max(lastAt[seq] as number, at);
    each.push(at - (sentAt[seq] as number));
  };
  let errors = 0;
  let accepted = 0;
  let firstProblem: string | undefined;
  await pacedSend(total, rate, seconds, 100, async (k) => {
    const peer = mesh.peers[k % mesh.peers.length] as Peer;
    sentAt[k] = performance.now();
    try {
      const res = await postJson(peer.pool, mesh.headers, '/mesh/messages', {
        from: peer.id,
        text: messageText(settings, tag, k),
      });
      if (res.status === 201) accepted++;
      else {
        errors++;
        firstProblem ??= `POST /mesh/messages (broadcast) answered ${res.status}: ${res.text}`;
      }
    } catch (error) {
      errors++;
      firstProblem ??= `POST /mesh/messages (broadcast): ${(error as Error).message}`;
    }
  });
  await waitUntil(() => each.length >= accepted * recipients, performance.now() + settings.drainMs);
  const last: number[] = [];
  for (let k = 0; k < total; k++) {
    if (arrivals[k] === recipients) last.push((lastAt[k] as number) - (sentAt[k] as number));
  }
  if (last.length < accepted) {
    firstProblem ??= `${accepted - last.length} broadcasts did not reach all ${recipients} others`;
  }
  return {
    rate,
    broadcasts: total,
    recipients,
    complete: last.length,
    errors,
    lastP50Ms: percentileMs(last, 50),
    lastP99Ms: percentileMs(last, 99),
    lastMaxMs: percentileMs(last, 100),
    eachP50Ms: percentileMs(each, 50),
    eachP99Ms: percentileMs(each, 99),
    ...(firstProblem === undefined ? {} : { firstProblem }),
  };
}

// ---------------------------------------------------------------- the whole section

/** Best delivered rate over the throughput runs, and the p99 of the fastest paced run. */
export function judgeMesh(figures: MeshFigures): void {
  const best = Math.max(0, ...figures.throughput.map((r) => r.deliveredPerSecond));
  const paced = [...figures.latency].sort((a, b) => b.rate - a.rate)[0];
  figures.goals = [
    goal(
      'mesh delivered messages/s (best run)',
      figures.throughput.length > 0 ? best : null,
      MESH_GOALS.deliveredPerSecond,
      '',
      '>=',
    ),
    goal(
      `mesh delivery p99 at ${paced?.rate ?? '-'} msg/s (ms)`,
      paced === undefined || !Number.isFinite(paced.p99Ms) ? null : paced.p99Ms,
      MESH_GOALS.p99Ms,
      ' ms',
    ),
  ];
}

/**
 * Starts the broker, connects the peers, and runs the warm-up, one throughput run per
 * concurrency, the paced latency runs and the broadcasts, filling `figures` as it goes.
 * `onProblem` hears of every failure; the broker and the peers' connections are closed
 * afterwards (the caller's stopAll also stops the broker on errors).
 */
export async function measureMesh(
  ctx: BenchContext,
  settings: MeshSettings,
  figures: MeshFigures,
  onProblem: (message: string) => void,
): Promise<void> {
  const { cpuProfile: _cpuProfile, ...shown } = settings;
  figures.settings = shown;
  figures.peers = settings.peers;
  const broker = await startMeshBroker(ctx, { cpuProfile: settings.cpuProfile });
  console.log(`  broker   ${broker.origin} (pid ${broker.pid})`);
  const connections = Math.max(...settings.throughput.concurrencyPerPeer, 4);
  let mesh: Mesh;
  try {
    mesh = await connectPeers(broker, settings.peers, connections);
  } catch (error) {
    await stopProcess(broker.child.process, 10_000);
    throw error;
  }
  figures.skipped = null;
  const report = (problem: string | undefined, label: string, otherCores = 0): void => {
    if (problem !== undefined) onProblem(`mesh ${label}: ${problem}`);
    if (otherCores > DISTURBED_CORES) {
      onProblem(
        `mesh ${label}: other programs used ${otherCores} cores meanwhile; these figures are not the broker's alone`,
      );
    }
  };
  try {
    const middle = settings.throughput.concurrencyPerPeer[1] ?? 4;
    const warm = await measureThroughputRun(mesh, settings, settings.warmupMessages, middle);
    console.log(`  warm-up  ${warm.delivered} messages at ${middle} per peer`);
    report(warm.firstProblem, 'warm-up');
    for (const perPeer of settings.throughput.concurrencyPerPeer) {
      const run = await measureThroughputRun(mesh, settings, settings.throughput.messages, perPeer);
      figures.throughput.push(run);
      report(run.firstProblem, `throughput ${perPeer} per peer`, run.otherCores);
      console.log(
        `  throughput ${String(perPeer).padStart(2)} per peer (${run.inFlight} in flight): ` +
          `${run.deliveredPerSecond} delivered/s, ${run.acceptedPerSecond} accepted/s, ` +
          `broker ${run.serverCpuUsPerMessage} µs CPU/msg (${run.serverCores} cores), ` +
          `client ${run.clientCpuUsPerMessage} µs/msg, other load ${run.otherCores} cores`,
      );
    }
    for (const rate of settings.latency.rates) {
      const run = await measureLatencyRun(mesh, settings, rate);
      figures.latency.push(run);
      report(run.firstProblem, `latency at ${rate} msg/s`, run.otherCores);
      console.log(
        `  paced ${rate} msg/s (sent ${run.sentPerSecond}/s): p50 ${run.p50Ms} ms  p90 ${run.p90Ms} ms  ` +
          `p99 ${run.p99Ms} ms  max ${run.maxMs} ms  (${run.delivered}/${run.sent} delivered, ` +
          `other load ${run.otherCores} cores)`,
      );
    }
    const broadcast = await measureBroadcast(mesh, settings);
    figures.broadcast = broadcast;
    report(broadcast.firstProblem, 'broadcast');
    console.log(
      `  broadcast ${broadcast.rate}/s to ${broadcast.recipients}: last recipient p50 ` +
        `${broadcast.lastP50Ms} ms  p99 ${broadcast.lastP99Ms} ms  ` +
        `(${broadcast.complete}/${broadcast.broadcasts} complete)`,
    );
    if (mesh.stray > 0) onProblem(`mesh: ${mesh.stray} frames from an earlier phase arrived late`);
    for (const error of mesh.streamErrors) onProblem(`mesh: ${error}`);
  } finally {
    await closeMesh(mesh);
    // A profiled broker writes its profile on the way out, which takes a moment.
    await stopProcess(broker.child.process, 10_000);
  }
}

// ---------------------------------------------------------------- tables

type Row = [label: string, ...cells: string[]];

function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

const THROUGHPUT_HEADER: Row = [
  'mesh throughput',
  'in flight',
  'delivered/s',
  'accepted/s',
  'delivered',
  'broker CPU/msg (µs)',
  'broker cores',
  'client CPU/msg (µs)',
  'other load (cores)',
  'errors',
];
const LATENCY_HEADER: Row = [
  'mesh delivery latency',
  'sent/s',
  'delivered',
  'p50 (ms)',
  'p90 (ms)',
  'p99 (ms)',
  'max (ms)',
  'other load (cores)',
  'errors',
];
const MESH_GOAL_HEADER: Row = ['mesh goal', 'value', 'limit', 'result'];

function throughputRows(figures: MeshFigures): Row[] {
  return figures.throughput.map((r) => [
    `${r.concurrencyPerPeer} per peer, ${fmt(r.messages)} messages`,
    fmt(r.inFlight),
    fmt(r.deliveredPerSecond),
    fmt(r.acceptedPerSecond),
    `${fmt(r.delivered)} / ${fmt(r.accepted)}`,
    fmt(r.serverCpuUsPerMessage),
    fmt(r.serverCores, 2),
    fmt(r.clientCpuUsPerMessage),
    fmt(r.otherCores, 2),
    fmt(r.rejected + r.errors),
  ]);
}

function latencyRows(figures: MeshFigures): Row[] {
  const rows: Row[] = figures.latency.map((r) => [
    `direct, paced ${fmt(r.rate)} msg/s`,
    fmt(r.sentPerSecond),
    `${fmt(r.delivered)} / ${fmt(r.sent)}`,
    fmt(r.p50Ms, 2),
    fmt(r.p90Ms, 2),
    fmt(r.p99Ms, 2),
    fmt(r.maxMs, 2),
    fmt(r.otherCores, 2),
    fmt(r.errors),
  ]);
  const b = figures.broadcast;
  if (b !== null) {
    rows.push(
      [
        `broadcast ${fmt(b.rate)}/s, last of ${b.recipients}`,
        fmt(b.rate),
        `${fmt(b.complete)} / ${fmt(b.broadcasts)}`,
        fmt(b.lastP50Ms, 2),
        '-',
        fmt(b.lastP99Ms, 2),
        fmt(b.lastMaxMs, 2),
        '-',
        fmt(b.errors),
      ],
      [
        `broadcast ${fmt(b.rate)}/s, each delivery`,
        '-',
        '-',
        fmt(b.eachP50Ms, 2),
        '-',
        fmt(b.eachP99Ms, 2),
        '-',
        '-',
        '-',
      ],
    );
  }
  return rows;
}

function goalRows(figures: MeshFigures): Row[] {
  return figures.goals.map((g) => [g.name, fmt(g.value, 3), g.limit, g.result]);
}

function intro(figures: MeshFigures): string {
  const m = figures.machine;
  return (
    `Agent mesh: ${figures.peers} peers against one \`palisade serve\` ` +
    `(PALISADE_MESH_RATE_LIMIT=${MESH_RATE_LIMIT}, so the per-peer limit of 100 per 10 s is not what is measured); ` +
    `the bench client shares the machine's ${m.cores} cores with the broker. ` +
    `Run of ${figures.date.slice(0, 10)} on ${m.cpu}, node ${m.node}; load average ` +
    `${m.loadAverageAtStart.join(' ')} at start, ${m.loadAverageAtEnd.join(' ')} at end.`
  );
}

function problemLines(figures: MeshFigures): string[] {
  if (figures.problems.length === 0) return [];
  return ['', 'Problems:', '', ...figures.problems.map((p) => `- ${p}`)];
}

/** The mesh figures as tables drawn by `table`: text for stdout, Markdown for the README. */
function meshTables(figures: MeshFigures, table: typeof textTable): string {
  if (figures.skipped !== null) return `Agent mesh skipped: ${figures.skipped}`;
  return [
    intro(figures),
    '',
    table(THROUGHPUT_HEADER, throughputRows(figures)),
    '',
    table(LATENCY_HEADER, latencyRows(figures)),
    '',
    table(MESH_GOAL_HEADER, goalRows(figures)),
    ...problemLines(figures),
  ].join('\n');
}

export const meshReport = (figures: MeshFigures) => meshTables(figures, textTable);
export const meshMarkdown = (figures: MeshFigures) => meshTables(figures, markdownTable);
