/**
 * Palisade's Anthropic Messages route (`/v1/messages`, translated to chat completions and
 * back) against its own chat completions route, on the same process and the same upstream
 * answer. The two routes take turns, in the order chat, messages, messages, chat, ... so
 * drift in the machine's load falls on both alike.
 */
import { measurePaced, type PacedRun, type PacedSettings } from './paced.js';
import { mean, round } from './stats.js';
import type { Route, RouteName, Target } from './targets.js';
import { measureThroughput, type ThroughputRun } from './throughput.js';
import {
  collectStreams,
  summarizeStreams,
  type StreamSamples,
  type TtfbRun,
  type TtfbSettings,
} from './ttfb.js';

export const ROUTE_NAMES = ['chat', 'messages'] as const satisfies readonly RouteName[];

export interface MessagesSettings {
  throughput: { seconds: number; rounds: number; warmupSeconds: number };
  /** Each round runs wrk once per route for `seconds`. */
  paced: PacedSettings & { rounds: number };
  /** `requests` per route in all, split over `rounds` turns, each after `warmup` requests. */
  stream: TtfbSettings & { rounds: number };
}

/** Paced latency over several wrk runs: each figure is the mean of the runs' figures. */
export interface PacedSummary extends PacedRun {
  runs: PacedRun[];
}

export type RoutePair = Record<RouteName, Route>;

/** Round 1: chat then messages; round 2: messages then chat; and so on. */
function turns(pair: RoutePair, roundIndex: number): Route[] {
  return roundIndex % 2 === 0 ? [pair.chat, pair.messages] : [pair.messages, pair.chat];
}

function emptyLists<T>(): Record<RouteName, T[]> {
  return { chat: [], messages: [] };
}

export async function compareThroughput(
  target: Target,
  pair: RoutePair,
  settings: MessagesSettings['throughput'],
): Promise<Record<RouteName, ThroughputRun[]>> {
  for (const route of turns(pair, 0)) {
    await measureThroughput(target, settings.warmupSeconds, route);
  }
  const runs = emptyLists<ThroughputRun>();
  for (let i = 0; i < settings.rounds; i++) {
    for (const route of turns(pair, i)) {
      const run = await measureThroughput(target, settings.seconds, route);
      runs[route.name].push(run);
      console.log(`  round ${i + 1} ${route.name.padEnd(8)} ${Math.round(run.rps)} req/s`);
    }
  }
  return runs;
}

export function summarizePaced(runs: PacedRun[]): PacedSummary {
  const avg = (pick: (r: PacedRun) => number): number => round(mean(runs.map(pick)), 1);
  return {
    rps: avg((r) => r.rps),
    errors: runs.reduce((sum, r) => sum + r.errors, 0),
    p50Us: avg((r) => r.p50Us),
    p90Us: avg((r) => r.p90Us),
    p99Us: avg((r) => r.p99Us),
    p999Us: avg((r) => r.p999Us),
    runs,
  };
}

export async function comparePaced(
  ctx: { root: string },
  target: Target,
  pair: RoutePair,
  settings: MessagesSettings['paced'],
): Promise<Record<RouteName, PacedRun[]>> {
  const runs = emptyLists<PacedRun>();
  for (let i = 0; i < settings.rounds; i++) {
    for (const route of turns(pair, i)) {
      const run = await measurePaced(ctx, target, settings, route);
      runs[route.name].push(run);
      console.log(
        `  round ${i + 1} ${route.name.padEnd(8)} ${Math.round(run.rps)} req/s  p50 ${run.p50Us} µs  p99 ${run.p99Us} µs`,
      );
    }
  }
  return runs;
}

export async function compareStreams(
  target: Target,
  pair: RoutePair,
  settings: MessagesSettings['stream'],
): Promise<Record<RouteName, TtfbRun>> {
  const samples = emptyLists<StreamSamples>();
  const perTurn = Math.ceil(settings.requests / settings.rounds);
  for (let i = 0; i < settings.rounds; i++) {
    for (const route of turns(pair, i)) {
      samples[route.name].push(
        await collectStreams(target, route, { ...settings, requests: perTurn }),
      );
    }
  }
  return { chat: summarizeStreams(samples.chat), messages: summarizeStreams(samples.messages) };
}
