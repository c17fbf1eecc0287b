/** Download progress for people (a bar on a terminal) and for the jobs runner (lines). */
import type { PullProgress } from './pull.js';

/** Bytes in decimal units, like `29.2 MB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 999.95 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function formatEta(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Prints pull progress. On a terminal: one line redrawn in place (bar, percent, bytes, speed,
 * ETA). Elsewhere (a pipe, a job's log): `progress: 42.0% 12.3 MB of 29.2 MB, 5.1 MB/s` at
 * most once a second and at the end, which the jobs runner parses for its progress bar.
 *
 * @example
 * await pullModel({ home, source, onProgress: createProgressPrinter(process.stdout) });
 */
export function createProgressPrinter(
  out: ProgressOutput,
  options: { now?: () => number; tty?: boolean } = {},
): (progress: PullProgress) => void {
  const now = options.now ?? Date.now;
  const tty = options.tty ?? out.isTTY === true;
  const interval = tty ? 100 : 1000;
  let started: { at: number; bytes: number } | undefined;
  let last = -Infinity;
  let finished = false;
  return (progress) => {
    if (finished) return;
    const at = now();
    started ??= { at, bytes: progress.bytes };
    if (!progress.done && at - last < interval) return;
    last = at;
    const seconds = (at - started.at) / 1000;
    const speed = seconds > 0 ? (progress.bytes - started.bytes) / seconds : undefined;
    const { bytes, total } = progress;
    const percent =
      total !== undefined && total > 0 ? Math.min(100, (bytes / total) * 100) : undefined;
    if (progress.done) finished = true;
    if (!tty) {
      const parts = [
        percent !== undefined ? `${percent.toFixed(1)}% ` : '',
        formatBytes(bytes),
        total !== undefined ? ` of ${formatBytes(total)}` : '',
        speed !== undefined ? `, ${formatBytes(Math.round(speed))}/s` : '',
      ];
      out.write(`progress: ${parts.join('')}\n`);
      return;
    }
    const eta =
      !progress.done && total !== undefined && speed !== undefined && speed > 0
        ? `  ETA ${formatEta((total - bytes) / speed)}`
        : '';
    const text = [
      percent !== undefined ? `${percent.toFixed(1).padStart(5)}%` : '',
      `${formatBytes(bytes)}${total !== undefined ? ` / ${formatBytes(total)}` : ''}`,
      speed !== undefined ? `${formatBytes(Math.round(speed))}/s` : '',
    ]
      .filter(Boolean)
      .join('  ');
    const width = Math.max(10, Math.min(40, (out.columns || 80) - text.length - eta.length - 4));
    const bar =
      percent !== undefined
        ? `[${'#'.repeat(Math.round((percent / 100) * width)).padEnd(width, '.')}] `
        : '';
    out.write(`\r${bar}${text}${eta}\x1b[K${progress.done ? '\n' : ''}`);
  };
}
