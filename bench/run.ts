/**
 * `npm run bench`: the mock upstream, a bare undici proxy, Palisade and Portkey, each in its
 * own process, measured side by side in one run; prints a table and writes
 * bench/results.json. See bench/README.md.
 *
 * Flags: --quick (short smoke run), --no-build (use dist/ as it is), --keep (keep the
 * temporary directory with the targets' logs), --only gateway|mesh|local (just the gateway
 * targets, the agent mesh or the embedded model), --mesh-cpu-prof (run the mesh broker under
 * `node --cpu-prof`; implies --keep).
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as prettier from 'prettier';
import {
  comparePaced,
  compareStreams,
  compareThroughput,
  summarizePaced,
  type MessagesSettings,
  type RoutePair,
} from './lib/messages.js';
import { installCleanup, logTail, stopAll, stopProcess } from './lib/processes.js';
import { measurePaced, WRK_MISSING, wrkVersion, type PacedSettings } from './lib/paced.js';
import {
  describeMachine,
  emptyResults,
  figureRows,
  FIGURE_HEADER,
  GOAL_HEADER,
  goalRows,
  judge,
  markdownTable,
  MESSAGES_HEADER,
  messagesRows,
  RATIO_HEADER,
  ratioRows,
  textTable,
  throughputFigures,
  type Results,
} from './lib/results.js';
import {
  emptyMeshFigures,
  judgeMesh,
  MESH_RATE_LIMIT,
  measureMesh,
  meshMarkdown,
  meshReport,
  type MeshSettings,
} from './lib/mesh.js';
import {
  emptyLocalFigures,
  judgeLocal,
  localMarkdown,
  localReport,
  measureLocal,
  type LocalSettings,
} from './lib/local.js';
import { measureStreamsRss, type RssSettings } from './lib/rss.js';
import {
  buildPalisade,
  chatRoute,
  checkTarget,
  messagesRoute,
  startBare,
  startDirect,
  startPalisade,
  startPortkey,
  TARGET_NAMES,
  type BenchContext,
  type Target,
  type TargetName,
} from './lib/targets.js';
import { measureThroughput, THROUGHPUT_CONNECTIONS, type ThroughputRun } from './lib/throughput.js';
import { measureTtfb, type TtfbSettings } from './lib/ttfb.js';

const ONLY = ['all', 'gateway', 'mesh', 'local'] as const;
type Only = (typeof ONLY)[number];
/** The parts of a run: `--only` picks one, `all` runs each in turn. */
type Part = Exclude<Only, 'all'>;
const runs = (only: Only, part: Part) => only === 'all' || only === part;

interface Settings {
  quick: boolean;
  build: boolean;
  keep: boolean;
  /** One part (the gateway targets, the agent mesh or the embedded model), or all of them. */
  only: Only;
  throughput: { seconds: number; rounds: number; warmupSeconds: number; connections: number };
  paced: PacedSettings;
  ttfb: TtfbSettings;
  rss: RssSettings;
  messages: MessagesSettings;
  mesh: MeshSettings;
  local: LocalSettings;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      only: { type: 'string', default: 'all' },
      'mesh-cpu-prof': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const only = values.only as Only;
  if (!ONLY.includes(only)) {
    throw new Error(`--only takes ${ONLY.filter((o) => o !== 'all').join(', ')}, not ${only}`);
  }
  const cpuProfile = values['mesh-cpu-prof'];
  return {
    quick,
    build: !values['no-build'],
    keep: values.keep || cpuProfile,
    only,
    throughput: {
      seconds: quick ? 2 : 8,
      rounds: 2,
      warmupSeconds: quick ? 1 : 2,
      connections: THROUGHPUT_CONNECTIONS,
    },
    paced: { seconds: quick ? 4 : 15, rate: 500, connections: 16 },
    ttfb: { requests: quick ? 50 : 200, concurrency: 10, warmup: quick ? 10 : 20 },
    rss: { streams: quick ? 200 : 1000, timeoutMs: 30_000 },
    messages: {
      throughput: { seconds: quick ? 2 : 5, rounds: 2, warmupSeconds: quick ? 1 : 2 },
      paced: { seconds: quick ? 2 : 5, rate: 500, connections: 16, rounds: quick ? 2 : 4 },
      stream: { requests: quick ? 50 : 200, concurrency: 10, warmup: quick ? 10 : 20, rounds: 2 },
    },
    mesh: {
      peers: 10,
      warmupMessages: quick ? 1000 : 3000,
      throughput: {
        messages: quick ? 5000 : 20_000,
        concurrencyPerPeer: quick ? [1, 16] : [1, 4, 16],
        timeoutMs: 60_000,
      },
      latency: { rates: quick ? [1000] : [500, 1000], seconds: quick ? 2 : 5 },
      broadcast: { rate: 50, seconds: quick ? 2 : 4 },
      drainMs: 10_000,
      textBytes: 128,
      cpuProfile,
    },
    local: {
      contextLength: 2048,
      generation: { maxTokens: quick ? 64 : 256, rounds: quick ? 3 : 7, warmup: quick ? 1 : 2 },
      burst: {
        requests: 20,
        maxTokens: 64,
        queueMaxTokens: 512,
        rounds: quick ? 1 : 3,
        parallel: [1, 4],
        queueLimit: 5,
        pollMs: 10,
      },
    },
  };
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RESULTS_PATH = join(ROOT, 'bench', 'results.json');
const README_PATH = join(ROOT, 'bench', 'README.md');

/** Keeps machine paths out of anything printed to results.json or the README. */
function scrub(ctx: BenchContext, text: string): string {
  return text
    .split(ctx.workDir)
    .join('<tmp>')
    .split(ROOT.replace(/\/$/, ''))
    .join('.')
    .split(os.homedir())
    .join('~');
}

function note(ctx: BenchContext, results: Results, message: string): void {
  const clean = scrub(ctx, message);
  results.problems.push(clean);
  console.log(`  ! ${clean}`);
}

// ---------------------------------------------------------------- targets

type Starter = () => Promise<Target>;

let built = false;

/** `npm run build` once per run, unless --no-build. */
function ensureBuilt(ctx: BenchContext, settings: Settings): void {
  if (!settings.build || built) return;
  console.log('  building Palisade (npm run build)...');
  buildPalisade(ctx);
  built = true;
}

async function startTarget(
  ctx: BenchContext,
  results: Results,
  name: TargetName,
  start: Starter,
): Promise<Target | undefined> {
  let target: Target | undefined;
  try {
    target = await start();
    await checkTarget(target);
    results.targets[name] = { status: 'ok' };
    console.log(`  ${name.padEnd(8)} ${target.origin} (pid ${target.pid})`);
    return target;
  } catch (error) {
    const reason = scrub(ctx, (error as Error).message);
    results.targets[name] = { status: 'unavailable', reason };
    console.log(`  ${name.padEnd(8)} unavailable: ${reason}`);
    const tail = logTail(join(ctx.workDir, `${name}.log`));
    if (tail !== '') console.log(scrub(ctx, tail).replace(/^/gm, `    ${name}| `));
    if (target !== undefined) await stopProcess(target.child.process);
    return undefined;
  }
}

async function startTargets(
  ctx: BenchContext,
  settings: Settings,
  results: Results,
): Promise<Target[]> {
  console.log('Starting targets');
  const direct = await startTarget(ctx, results, 'direct', () => startDirect(ctx));
  if (direct === undefined) throw new Error('the mock upstream did not start; nothing to measure');
  const mock = direct.origin;
  const palisadeStart: Starter = async () => {
    ensureBuilt(ctx, settings);
    return startPalisade(ctx, mock);
  };
  const others: Array<[TargetName, Starter]> = [
    ['bare', () => startBare(ctx, mock)],
    ['palisade', palisadeStart],
    ['portkey', () => startPortkey(ctx, mock)],
  ];
  const started: Target[] = [direct];
  for (const [name, start] of others) {
    const target = await startTarget(ctx, results, name, start);
    if (target !== undefined) started.push(target);
  }
  return started;
}

// ---------------------------------------------------------------- measurements

/** Runs one measurement; a failure is noted and the run goes on. */
async function attempt<T>(
  ctx: BenchContext,
  results: Results,
  label: string,
  fn: () => Promise<T>,
): Promise<T | undefined> {
  try {
    return await fn();
  } catch (error) {
    note(ctx, results, `${label}: ${(error as Error).message}`);
    return undefined;
  }
}

async function runThroughput(
  ctx: BenchContext,
  targets: Target[],
  settings: Settings,
  results: Results,
): Promise<void> {
  const { seconds, rounds, warmupSeconds } = settings.throughput;
  console.log(
    `\nThroughput: ${settings.throughput.connections} connections, ${seconds} s per target, ${rounds} rounds`,
  );
  for (const target of targets) {
    await attempt(ctx, results, `warm-up ${target.name}`, () =>
      measureThroughput(target, warmupSeconds),
    );
  }
  const runs = new Map<TargetName, ThroughputRun[]>();
  for (let round = 1; round <= rounds; round++) {
    for (const target of targets) {
      const run = await attempt(ctx, results, `throughput ${target.name}`, () =>
        measureThroughput(target, seconds),
      );
      if (run === undefined) continue;
      runs.set(target.name, [...(runs.get(target.name) ?? []), run]);
      console.log(`  round ${round} ${target.name.padEnd(8)} ${Math.round(run.rps)} req/s`);
    }
  }
  for (const [name, list] of runs) results.throughput[name] = throughputFigures(list);
}

async function runPaced(
  ctx: BenchContext,
  targets: Target[],
  settings: Settings,
  results: Results,
): Promise<void> {
  const { rate, seconds, connections } = settings.paced;
  console.log(
    `\nPaced latency: wrk, ~${rate} req/s over ${connections} connections, ${seconds} s per target`,
  );
  if (results.machine.wrk === null) {
    results.pacedSkipped = WRK_MISSING;
    console.log(`  skipped: ${WRK_MISSING}`);
    return;
  }
  for (const target of targets) {
    const run = await attempt(ctx, results, `paced ${target.name}`, () =>
      measurePaced(ctx, target, settings.paced),
    );
    if (run === undefined) continue;
    results.paced[target.name] = run;
    console.log(
      `  ${target.name.padEnd(8)} ${Math.round(run.rps)} req/s  p50 ${run.p50Us} µs  p99 ${run.p99Us} µs`,
    );
  }
}

async function runTtfb(
  ctx: BenchContext,
  targets: Target[],
  settings: Settings,
  results: Results,
): Promise<void> {
  const { requests, concurrency } = settings.ttfb;
  console.log(`\nStreaming time to first chunk: ${requests} requests, ${concurrency} at a time`);
  for (const target of targets) {
    const run = await attempt(ctx, results, `ttfb ${target.name}`, () =>
      measureTtfb(target, settings.ttfb),
    );
    if (run === undefined) continue;
    results.ttfb[target.name] = run;
    const failed = run.errors > 0 ? `  (${run.errors} failed)` : '';
    console.log(
      `  ${target.name.padEnd(8)} p50 ${run.p50Ms.toFixed(2)} ms  p99 ${run.p99Ms.toFixed(2)} ms${failed}`,
    );
  }
}

async function runRss(
  ctx: BenchContext,
  targets: Target[],
  settings: Settings,
  results: Results,
): Promise<void> {
  console.log(`\nRSS holding ${settings.rss.streams} endless streams`);
  const measured = targets.filter((t) => t.name === 'palisade' || t.name === 'bare');
  for (const target of measured) {
    const run = await attempt(ctx, results, `rss ${target.name}`, () =>
      measureStreamsRss(target, settings.rss),
    );
    if (run === undefined) continue;
    results.rss[target.name] = run;
    if (run.firstError !== undefined) {
      note(
        ctx,
        results,
        `rss ${target.name}: ${run.open}/${run.streams} open; first problem: ${run.firstError}`,
      );
    }
    console.log(
      `  ${target.name.padEnd(8)} ${run.open}/${run.streams} open  idle ${run.idleMb.toFixed(1)} MB  held ${run.heldMb.toFixed(1)} MB`,
    );
  }
}

/**
 * Palisade's `/v1/messages` against its `/v1/chat/completions`: throughput, paced latency
 * and streaming, each with the two routes taking turns.
 */
async function runMessages(
  ctx: BenchContext,
  targets: Target[],
  settings: Settings,
  results: Results,
): Promise<void> {
  const m = results.messages;
  const s = settings.messages;
  console.log('\nMessages route vs chat completions, both on Palisade');
  const palisade = targets.find((t) => t.name === 'palisade');
  const messages = palisade === undefined ? undefined : messagesRoute(palisade);
  if (palisade === undefined || messages === undefined) {
    m.skipped = 'palisade is unavailable';
    console.log(`  skipped: ${m.skipped}`);
    return;
  }
  const pair: RoutePair = { chat: chatRoute(palisade), messages };
  try {
    await checkTarget(palisade, messages);
  } catch (error) {
    m.skipped = scrub(ctx, (error as Error).message);
    console.log(`  skipped: ${m.skipped}`);
    return;
  }
  m.skipped = null;

  const { seconds } = s.throughput;
  console.log(`  throughput: ${THROUGHPUT_CONNECTIONS} connections, ${seconds} s per run`);
  const throughput = await attempt(ctx, results, 'messages throughput', () =>
    compareThroughput(palisade, pair, s.throughput),
  );
  if (throughput !== undefined) {
    m.throughput = {
      chat: throughputFigures(throughput.chat),
      messages: throughputFigures(throughput.messages),
    };
  }

  console.log(
    `  paced latency: wrk, ~${s.paced.rate} req/s, ${s.paced.seconds} s per run, ${s.paced.rounds} rounds`,
  );
  if (results.machine.wrk === null) {
    note(ctx, results, `messages paced latency skipped: ${WRK_MISSING}`);
  } else {
    const paced = await attempt(ctx, results, 'messages paced', () =>
      comparePaced(ctx, palisade, pair, s.paced),
    );
    if (paced !== undefined) {
      m.paced = { chat: summarizePaced(paced.chat), messages: summarizePaced(paced.messages) };
    }
  }

  console.log(
    `  streaming: ${s.stream.requests} requests per route, ${s.stream.concurrency} at a time`,
  );
  const stream = await attempt(ctx, results, 'messages streaming', () =>
    compareStreams(palisade, pair, s.stream),
  );
  if (stream !== undefined) {
    m.stream = stream;
    for (const [name, run] of Object.entries(stream)) {
      const failed = run.errors > 0 ? `  (${run.errors} failed)` : '';
      console.log(
        `  ${name.padEnd(8)} first chunk p50 ${run.p50Ms.toFixed(2)} ms  total p50 ${run.totalP50Ms.toFixed(2)} ms${failed}`,
      );
    }
  }
}

/**
 * The agent mesh broker on its own `palisade serve` (new home, nothing else running): 10
 * peers, throughput at a few concurrencies, paced delivery latency, broadcasts.
 */
async function runMesh(ctx: BenchContext, settings: Settings, results: Results): Promise<void> {
  const figures = emptyMeshFigures(results.mode, results.machine);
  results.mesh = figures;
  const s = settings.mesh;
  console.log(
    `\nAgent mesh: ${s.peers} peers on one palisade serve, PALISADE_MESH_RATE_LIMIT=${MESH_RATE_LIMIT} ` +
      `(the default, 100 per 10 s per peer, would be what is measured); the client shares the cores`,
  );
  try {
    ensureBuilt(ctx, settings);
    await measureMesh(ctx, s, figures, (message) => {
      note(ctx, results, message);
      figures.problems.push(scrub(ctx, message));
    });
  } catch (error) {
    const reason = scrub(ctx, (error as Error).message);
    if (figures.skipped === null) {
      note(ctx, results, `mesh: ${reason}`);
      figures.problems.push(`mesh: ${reason}`);
    } else {
      figures.skipped = reason;
      console.log(`  skipped: ${reason}`);
      const tail = logTail(join(ctx.workDir, 'mesh.log'));
      if (tail !== '') console.log(scrub(ctx, tail).replace(/^/gm, '    mesh| '));
    }
  }
  figures.machine.loadAverageAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  judgeMesh(figures);
}

/**
 * The embedded GGUF model: a tiny generated model in this process and through its own
 * `palisade serve` per configuration (new home, nothing else running).
 */
async function runLocal(ctx: BenchContext, settings: Settings, results: Results): Promise<void> {
  const figures = emptyLocalFigures(results.mode, results.machine, settings.local);
  results.local = figures;
  console.log(
    '\nEmbedded model: a generated tiny GGUF, PALISADE_LOCAL_THREADS=1, PALISADE_LOCAL_GPU=false; ' +
      'the client shares the cores',
  );
  const noted = (message: string) => {
    note(ctx, results, message);
    figures.problems.push(scrub(ctx, message));
  };
  try {
    ensureBuilt(ctx, settings);
    await measureLocal(ctx, settings.local, figures, noted);
  } catch (error) {
    const reason = scrub(ctx, (error as Error).message);
    if (figures.skipped === null) noted(`local: ${reason}`);
    else {
      figures.skipped = reason;
      console.log(`  skipped: ${reason}`);
    }
  }
  figures.machine.loadAverageAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  judgeLocal(figures);
}

// ---------------------------------------------------------------- report

function report(results: Results, only: Only): string {
  const mesh = results.mesh === null ? [] : ['', meshReport(results.mesh)];
  const local = results.local === null ? [] : ['', localReport(results.local)];
  if (only === 'mesh') return mesh.join('\n').trimStart();
  if (only === 'local') return local.join('\n').trimStart();
  const unavailable = TARGET_NAMES.flatMap((name) => {
    const status = results.targets[name];
    return status.status === 'unavailable' ? [`- ${name}: ${status.reason}`] : [];
  });
  const m = results.machine;
  return [
    `${results.date} (${results.mode}) — ${m.cpu}, ${m.cores} cores, node ${m.node}, load ${m.loadAverageAtStart.join(' ')} at start`,
    '',
    textTable(FIGURE_HEADER, figureRows(results)),
    '',
    textTable(MESSAGES_HEADER, messagesRows(results)),
    '',
    textTable(RATIO_HEADER, ratioRows(results)),
    '',
    textTable(GOAL_HEADER, goalRows(results)),
    ...(results.messages.skipped
      ? ['', `Messages route skipped: ${results.messages.skipped}`]
      : []),
    ...(unavailable.length > 0 ? ['', 'Unavailable targets:', ...unavailable] : []),
    ...(results.pacedSkipped ? ['', `Paced latency skipped: ${results.pacedSkipped}`] : []),
    ...mesh,
    ...local,
  ].join('\n');
}

function readPreviousResults(): Results | undefined {
  try {
    const previous = JSON.parse(readFileSync(RESULTS_PATH, 'utf8')) as Results;
    return typeof previous === 'object' && previous !== null ? previous : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes results.json. A partial run keeps the other parts' figures from the file: --only
 * mesh replaces just `mesh`, --only local just `local`, --only gateway keeps the previous
 * `mesh` and `local`.
 */
function writeResults(results: Results, only: Only): void {
  const previous = only === 'all' ? undefined : readPreviousResults();
  if (only === 'mesh' && previous !== undefined) results = { ...previous, mesh: results.mesh };
  if (only === 'local' && previous !== undefined) results = { ...previous, local: results.local };
  if (only === 'gateway') {
    results.mesh = previous?.mesh ?? null;
    results.local = previous?.local ?? null;
  }
  const temporary = `${RESULTS_PATH}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(results, null, 2)}\n`);
  renameSync(temporary, RESULTS_PATH);
}

/** `text` with what lies between `<!-- NAME:start -->` and `<!-- NAME:end -->` replaced. */
function replaceSection(text: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from === -1 || to < from) return text;
  return `${text.slice(0, from)}${start}\n\n${body}\n\n${text.slice(to)}`;
}

/**
 * Replaces the README's results sections (between their markers) after a full run, formatted
 * as `prettier --check` expects: each part's section when that part ran.
 */
async function updateReadme(results: Results, only: Only): Promise<void> {
  if (!existsSync(README_PATH)) return;
  let readme = readFileSync(README_PATH, 'utf8');
  if (runs(only, 'gateway')) readme = replaceSection(readme, 'results', gatewayMarkdown(results));
  if (runs(only, 'mesh') && results.mesh !== null) {
    readme = replaceSection(readme, 'mesh-results', meshMarkdown(results.mesh));
  }
  if (runs(only, 'local') && results.local !== null) {
    readme = replaceSection(readme, 'local-results', localMarkdown(results.local));
  }
  const options = (await prettier.resolveConfig(README_PATH)) ?? {};
  writeFileSync(README_PATH, await prettier.format(readme, { ...options, parser: 'markdown' }));
}

function gatewayMarkdown(results: Results): string {
  const m = results.machine;
  return [
    `Run of ${results.date.slice(0, 10)} on ${m.cpu} (${m.cores} cores, ${m.memoryGb} GB), ` +
      `node ${m.node}, ${m.wrk ?? 'no wrk'}; load average ${m.loadAverageAtStart.join(' ')} ` +
      `at start, ${m.loadAverageAtEnd.join(' ')} at end.`,
    '',
    markdownTable(FIGURE_HEADER, figureRows(results)),
    '',
    markdownTable(MESSAGES_HEADER, messagesRows(results)),
    '',
    markdownTable(RATIO_HEADER, ratioRows(results)),
    '',
    markdownTable(GOAL_HEADER, goalRows(results)),
    ...(results.messages.skipped
      ? ['', `Messages route skipped: ${results.messages.skipped}`]
      : []),
  ].join('\n');
}

// ---------------------------------------------------------------- main

async function measureAll(ctx: BenchContext, settings: Settings, results: Results): Promise<void> {
  if (runs(settings.only, 'gateway')) {
    const targets = await startTargets(ctx, settings, results);
    await runThroughput(ctx, targets, settings, results);
    await runPaced(ctx, targets, settings, results);
    await runTtfb(ctx, targets, settings, results);
    await runMessages(ctx, targets, settings, results);
    await runRss(ctx, targets, settings, results);
    // The mesh broker gets the machine to itself.
    await stopAll();
  }
  if (runs(settings.only, 'mesh')) {
    await runMesh(ctx, settings, results);
    await stopAll();
  }
  // Likewise the embedded model, which keeps a core busy while it generates.
  if (runs(settings.only, 'local')) await runLocal(ctx, settings, results);
}

async function main(): Promise<void> {
  installCleanup();
  const settings = readSettings();
  const wrk = wrkVersion();
  if (wrk === undefined && runs(settings.only, 'gateway')) console.log(WRK_MISSING);
  const ctx: BenchContext = {
    root: ROOT,
    workDir: mkdtempSync(join(os.tmpdir(), 'palisade-bench-')),
  };
  if (!settings.keep) {
    // Also on Ctrl-C, when the finally below does not run.
    process.once('exit', () => rmSync(ctx.workDir, { recursive: true, force: true }));
  }
  const { quick, build: _build, keep: _keep, only: _only, ...measured } = settings;
  const results = emptyResults(quick ? 'quick' : 'full', describeMachine(wrk), measured);
  try {
    await measureAll(ctx, settings, results);
  } finally {
    await stopAll();
    if (settings.keep) console.log(`\nLogs kept in ${ctx.workDir}`);
  }
  results.machine.loadAverageAtEnd = os.loadavg().map((l) => Math.round(l * 100) / 100);
  judge(results);
  console.log(`\n${report(results, settings.only)}`);
  writeResults(results, settings.only);
  if (!quick) await updateReadme(results, settings.only);
  console.log('\nWrote bench/results.json');
}

main().catch(async (error: unknown) => {
  console.error(error);
  await stopAll();
  process.exit(1);
});
