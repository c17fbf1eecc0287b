/** Parsers for the human units used in flags and environment variables. */

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const DURATION_MS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration written `90s`, `15m`, `12h`, `30d` (or `250ms`) into milliseconds.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * (DURATION_MS[match[2] as string] as number);
  return Number.isFinite(ms) ? Math.round(ms) : undefined;
}

const BYTES = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i;
const BYTE_FACTORS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** Parses a size written `10mb`, `512kb` or a plain byte count. Undefined when it is not one. */
export function parseBytes(text: string): number | undefined {
  const match = BYTES.exec(text.trim());
  if (!match) return undefined;
  const factor = BYTE_FACTORS[(match[2] ?? 'b').toLowerCase()] as number;
  const bytes = Math.floor(Number(match[1]) * factor);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** Formats milliseconds as the largest whole unit: 90000 -> `90s`, 86400000 -> `1d`. */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const size = DURATION_MS[unit] as number;
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
