/** What one benchmark run found, the goals it is judged by, and how it is shown. */
import os from 'node:os';
import type { LocalFigures } from './local.js';
import type { MeshFigures } from './mesh.js';
import { ROUTE_NAMES, type PacedSummary } from './messages.js';
import type { PacedRun } from './paced.js';
import type { RssRun } from './rss.js';
import type { ThroughputRun } from './throughput.js';
import { mean, round } from './stats.js';
import { TARGET_NAMES, type RouteName, type TargetName } from './targets.js';
import type { TtfbRun } from './ttfb.js';

export type TargetStatus = { status: 'ok' } | { status: 'unavailable'; reason: string };

export interface ThroughputFigures {
  rounds: number[];
  meanRps: number;
  /** Mean over the rounds of the target process's CPU time per request. */
  cpuUsPerRequest: number;
  non2xx: number;
  errors: number;
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  wrk: string | null;
  loadAverageAtStart: number[];
  loadAverageAtEnd: number[];
}

/** Palisade's `/v1/messages` against its `/v1/chat/completions`, same process and run. */
export interface MessagesFigures {
  /** Why the comparison did not run; null when it did. */
  skipped: string | null;
  throughput: Partial<Record<RouteName, ThroughputFigures>>;
  paced: Partial<Record<RouteName, PacedSummary>>;
  /** Streaming: `p50Ms`/`p99Ms` to the first chunk, `totalP50Ms`/`totalP99Ms` to the end. */
  stream: Partial<Record<RouteName, TtfbRun>>;
}

export interface Goal {
  name: string;
  value: number | null;
  limit: string;
  result: 'pass' | 'miss' | 'n/a';
}

export interface Results {
  date: string;
  mode: 'full' | 'quick';
  machine: Machine;
  settings: Record<string, unknown>;
  targets: Record<TargetName, TargetStatus>;
  throughput: Partial<Record<TargetName, ThroughputFigures>>;
  paced: Partial<Record<TargetName, PacedRun>>;
  pacedSkipped: string | null;
  ttfb: Partial<Record<TargetName, TtfbRun>>;
  rss: Partial<Record<TargetName, RssRun>>;
  messages: MessagesFigures;
  /** The agent mesh broker, measured on its own `palisade serve` (bench/lib/mesh.ts). */
  mesh: MeshFigures | null;
  /** The embedded GGUF model, measured on its own `palisade serve` (bench/lib/local.ts). */
  local: LocalFigures | null;
  ratios: Record<string, number | null>;
  goals: Goal[];
  problems: string[];
}

export function describeMachine(wrk: string | undefined): Machine {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryGb: round(os.totalmem() / 1024 ** 3, 1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    wrk: wrk ?? null,
    loadAverageAtStart: os.loadavg().map((l) => round(l)),
    loadAverageAtEnd: [],
  };
}

export function emptyResults(
  mode: 'full' | 'quick',
  machine: Machine,
  settings: Record<string, unknown>,
): Results {
  const targets = Object.fromEntries(
    TARGET_NAMES.map((name) => [name, { status: 'unavailable', reason: 'not started' }]),
  ) as Record<TargetName, TargetStatus>;
  return {
    date: new Date().toISOString(),
    mode,
    machine,
    settings,
    targets,
    throughput: {},
    paced: {},
    pacedSkipped: null,
    ttfb: {},
    rss: {},
    messages: { skipped: 'not run', throughput: {}, paced: {}, stream: {} },
    mesh: null,
    local: null,
    ratios: {},
    goals: [],
    problems: [],
  };
}

export function throughputFigures(runs: ThroughputRun[]): ThroughputFigures {
  return {
    rounds: runs.map((r) => Math.round(r.rps)),
    meanRps: Math.round(mean(runs.map((r) => r.rps))),
    cpuUsPerRequest: round(mean(runs.map((r) => r.cpuUsPerRequest)), 1),
    non2xx: runs.reduce((sum, r) => sum + r.non2xx, 0),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
  };
}

// ---------------------------------------------------------------- derived figures

/** Paced latency a target adds over talking to the mock directly, in microseconds. */
export function addedUs(results: Results, name: TargetName, key: 'p50Us' | 'p99Us'): number | null {
  const target = results.paced[name];
  const direct = results.paced.direct;
  if (target === undefined || direct === undefined) return null;
  return target[key] - direct[key];
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined) return null;
  if (!Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return round(a / b, 3);
}

function difference(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a === null || a === undefined || b === null || b === undefined) return null;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return null;
  return a - b;
}

export function goal(
  name: string,
  value: number | null,
  limit: number,
  unit = '',
  bound: '<=' | '>=' = '<=',
): Goal {
  const met = value !== null && (bound === '<=' ? value <= limit : value >= limit);
  return {
    name,
    value: value === null ? null : round(value, 3),
    limit: `${bound} ${limit}${unit}`,
    result: value === null ? 'n/a' : met ? 'pass' : 'miss',
  };
}

/** A Messages figure minus the same chat figure (microseconds in, milliseconds out). */
function messagesAddedMs(results: Results, key: 'p50Us' | 'p99Us'): number | null {
  const { paced } = results.messages;
  const added = difference(paced.messages?.[key], paced.chat?.[key]);
  return added === null ? null : round(added / 1000, 3);
}

/** Fills `ratios` and `goals` from the measured figures. */
export function judge(results: Results): void {
  const t = results.throughput;
  const p50Added = {
    bare: addedUs(results, 'bare', 'p50Us'),
    palisade: addedUs(results, 'palisade', 'p50Us'),
  };
  const p99Added = {
    bare: addedUs(results, 'bare', 'p99Us'),
    palisade: addedUs(results, 'palisade', 'p99Us'),
  };
  const p50Difference =
    p50Added.bare === null || p50Added.palisade === null
      ? null
      : (p50Added.palisade - p50Added.bare) / 1000;
  const ttfbRatio = ratio(results.ttfb.palisade?.p50Ms, results.ttfb.bare?.p50Ms);
  const m = results.messages;
  const streamAdded = (key: 'p50Ms' | 'totalP50Ms'): number | null => {
    const added = difference(m.stream.messages?.[key], m.stream.chat?.[key]);
    return added === null ? null : round(added, 3);
  };
  results.ratios = {
    throughputPalisadeOverBare: ratio(t.palisade?.meanRps, t.bare?.meanRps),
    throughputPalisadeOverPortkey: ratio(t.palisade?.meanRps, t.portkey?.meanRps),
    cpuPerRequestPalisadeOverBare: ratio(t.palisade?.cpuUsPerRequest, t.bare?.cpuUsPerRequest),
    pacedP50AddedPalisadeMinusBareMs: p50Difference === null ? null : round(p50Difference, 3),
    pacedP99AddedPalisadeOverBare: ratio(p99Added.palisade, p99Added.bare),
    ttfbP50PalisadeOverBare: ttfbRatio,
    ttfbP99PalisadeOverBare: ratio(results.ttfb.palisade?.p99Ms, results.ttfb.bare?.p99Ms),
    messagesPacedP50AddedMs: messagesAddedMs(results, 'p50Us'),
    messagesPacedP99AddedMs: messagesAddedMs(results, 'p99Us'),
    messagesThroughputOverChat: ratio(m.throughput.messages?.meanRps, m.throughput.chat?.meanRps),
    messagesCpuPerRequestOverChat: ratio(
      m.throughput.messages?.cpuUsPerRequest,
      m.throughput.chat?.cpuUsPerRequest,
    ),
    messagesStreamFirstChunkP50AddedMs: streamAdded('p50Ms'),
    messagesStreamTotalP50AddedMs: streamAdded('totalP50Ms'),
  };
  const held = results.rss.palisade;
  results.goals = [
    goal(
      'throughput palisade / bare',
      results.ratios.throughputPalisadeOverBare ?? null,
      0.85,
      '',
      '>=',
    ),
    goal(
      'throughput palisade / portkey',
      results.ratios.throughputPalisadeOverPortkey ?? null,
      8,
      '',
      '>=',
    ),
    goal('paced p50 added: palisade minus bare (ms)', p50Difference, 0.1, ' ms'),
    goal(
      'paced p99 added: palisade / bare',
      results.ratios.pacedP99AddedPalisadeOverBare ?? null,
      1.2,
    ),
    goal('stream TTFB p50: palisade / bare', ttfbRatio, 1.1),
    goal(
      `RSS holding ${held?.streams ?? 0} streams: palisade (MB)`,
      held === undefined || held.open < held.streams ? null : held.heldMb,
      200,
      ' MB',
    ),
    goal(
      'messages p50 added vs chat (ms)',
      results.ratios.messagesPacedP50AddedMs ?? null,
      0.2,
      ' ms',
    ),
  ];
}

// ---------------------------------------------------------------- tables

type Cell = string;
type Row = [label: string, ...cells: Cell[]];

function fmt(value: number | null | undefined, digits = 0): Cell {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function perTarget(results: Results, cell: (name: TargetName) => Cell): Cell[] {
  return TARGET_NAMES.map((name) => (results.targets[name].status === 'ok' ? cell(name) : 'n/a'));
}

/** Every figure, one row each, one column per target. */
export function figureRows(results: Results): Row[] {
  const r = results;
  const rounds = Math.max(0, ...Object.values(r.throughput).map((f) => f.rounds.length));
  const rows: Row[] = [];
  for (let i = 0; i < rounds; i++) {
    rows.push([
      `throughput round ${i + 1} (req/s)`,
      ...perTarget(r, (n) => fmt(r.throughput[n]?.rounds[i])),
    ]);
  }
  rows.push(
    ['throughput mean (req/s)', ...perTarget(r, (n) => fmt(r.throughput[n]?.meanRps))],
    [
      'CPU per request, own process (µs)',
      ...perTarget(r, (n) => fmt(r.throughput[n]?.cpuUsPerRequest)),
    ],
    ['paced rate (req/s)', ...perTarget(r, (n) => fmt(r.paced[n]?.rps))],
    ['paced p50 (µs)', ...perTarget(r, (n) => fmt(r.paced[n]?.p50Us))],
    ['paced p90 (µs)', ...perTarget(r, (n) => fmt(r.paced[n]?.p90Us))],
    ['paced p99 (µs)', ...perTarget(r, (n) => fmt(r.paced[n]?.p99Us))],
    ['paced p99.9 (µs)', ...perTarget(r, (n) => fmt(r.paced[n]?.p999Us))],
    [
      'paced p50 added vs direct (µs)',
      ...perTarget(r, (n) => (n === 'direct' ? '-' : fmt(addedUs(r, n, 'p50Us')))),
    ],
    [
      'paced p99 added vs direct (µs)',
      ...perTarget(r, (n) => (n === 'direct' ? '-' : fmt(addedUs(r, n, 'p99Us')))),
    ],
    ['stream TTFB p50 (ms)', ...perTarget(r, (n) => fmt(r.ttfb[n]?.p50Ms, 2))],
    ['stream TTFB p99 (ms)', ...perTarget(r, (n) => fmt(r.ttfb[n]?.p99Ms, 2))],
    ['RSS idle (MB)', ...perTarget(r, (n) => fmt(r.rss[n]?.idleMb, 1))],
    [`RSS holding streams (MB)`, ...perTarget(r, (n) => fmt(r.rss[n]?.heldMb, 1))],
    [
      'streams open / asked',
      ...perTarget(r, (n) => (r.rss[n] ? `${r.rss[n].open} / ${r.rss[n].streams}` : '-')),
    ],
    ['errors + non-2xx (all tests)', ...perTarget(r, (n) => fmt(errorCount(r, n)))],
  );
  return rows;
}

function errorCount(results: Results, name: TargetName): number {
  const t = results.throughput[name];
  return (
    (t ? t.non2xx + t.errors : 0) +
    (results.paced[name]?.errors ?? 0) +
    (results.ttfb[name]?.errors ?? 0)
  );
}

export function ratioRows(results: Results): Row[] {
  const r = results.ratios;
  return [
    ['throughput palisade / bare', fmt(r.throughputPalisadeOverBare, 3)],
    ['throughput palisade / portkey', fmt(r.throughputPalisadeOverPortkey, 3)],
    ['CPU per request palisade / bare', fmt(r.cpuPerRequestPalisadeOverBare, 3)],
    ['stream TTFB p99 palisade / bare', fmt(r.ttfbP99PalisadeOverBare, 3)],
    ['messages p99 added vs chat (ms)', fmt(r.messagesPacedP99AddedMs, 3)],
    ['throughput messages / chat (palisade)', fmt(r.messagesThroughputOverChat, 3)],
    ['CPU per request messages / chat (palisade)', fmt(r.messagesCpuPerRequestOverChat, 3)],
  ];
}

/**
 * Palisade's two routes side by side: one column each, then messages minus chat (a negative
 * throughput difference is messages serving fewer requests).
 */
export function messagesRows(results: Results): Row[] {
  const { throughput, paced, stream } = results.messages;
  type Pick = (route: RouteName) => number | null | undefined;
  const row = (label: string, pick: Pick, digits = 0, withDifference = true): Row => [
    label,
    ...ROUTE_NAMES.map((route) => fmt(pick(route), digits)),
    withDifference ? fmt(difference(pick('messages'), pick('chat')), digits) : '-',
  ];
  const rounds = Math.max(0, ...Object.values(throughput).map((f) => f.rounds.length));
  const pacedRuns = Math.max(0, ...Object.values(paced).map((p) => p.runs.length));
  const rows: Row[] = [];
  for (let i = 0; i < rounds; i++) {
    rows.push(row(`throughput round ${i + 1} (req/s)`, (n) => throughput[n]?.rounds[i]));
  }
  rows.push(
    row('throughput mean (req/s)', (n) => throughput[n]?.meanRps),
    row('CPU per request, own process (µs)', (n) => throughput[n]?.cpuUsPerRequest),
    row(`paced rate, mean of ${pacedRuns} runs (req/s)`, (n) => paced[n]?.rps, 0, false),
    row('paced p50 (µs)', (n) => paced[n]?.p50Us),
    row('paced p90 (µs)', (n) => paced[n]?.p90Us),
    row('paced p99 (µs)', (n) => paced[n]?.p99Us),
    row('paced p99.9 (µs)', (n) => paced[n]?.p999Us),
    row('stream first chunk p50 (ms)', (n) => stream[n]?.p50Ms, 2),
    row('stream first chunk p99 (ms)', (n) => stream[n]?.p99Ms, 2),
    row('stream total p50 (ms)', (n) => stream[n]?.totalP50Ms, 2),
    row('stream total p99 (ms)', (n) => stream[n]?.totalP99Ms, 2),
    row(
      'errors + non-2xx (these tests)',
      (n) =>
        (throughput[n] ? throughput[n].non2xx + throughput[n].errors : 0) +
        (paced[n]?.errors ?? 0) +
        (stream[n]?.errors ?? 0),
      0,
      false,
    ),
  );
  return rows;
}

export function goalRows(results: Results): Row[] {
  return results.goals.map((g) => [g.name, fmt(g.value, 3), g.limit, g.result]);
}

export function textTable(header: Row, rows: Row[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => (row[i] ?? '').length)));
  const line = (row: Row): string =>
    row
      .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
      .join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function markdownTable(header: Row, rows: Row[]): string {
  const line = (row: Row): string => `| ${row.join(' | ')} |`;
  const rule = `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

export const FIGURE_HEADER: Row = ['figure', ...TARGET_NAMES];
export const MESSAGES_HEADER: Row = [
  'palisade: chat vs messages',
  '/v1/chat/completions',
  '/v1/messages',
  'messages minus chat',
];
export const RATIO_HEADER: Row = ['ratio', 'value'];
export const GOAL_HEADER: Row = ['goal', 'value', 'limit', 'result'];
