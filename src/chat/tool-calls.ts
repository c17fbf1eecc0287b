import { HttpError } from '../server/errors.js';

/** One function call a model asked for, whole. */
export interface ToolCall {
  id: string;
  name: string;
  /** The JSON text the model wrote, not yet parsed. */
  arguments: string;
}

/** Calls read per answer round; indexes past it are ignored. */
export const MAX_CALLS = 64;
/** Longest arguments text of one call. */
export const MAX_ARGUMENTS = 256 * 1024;
/** Longest arguments text of all the calls of one round: they are sent back every round. */
export const MAX_ROUND_ARGUMENTS = 1024 * 1024;
const CALL_ID = /^[\x21-\x7e]{1,128}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Gathers the `tool_calls` of one answer round: from the chunks of a stream (`delta.tool_calls`,
 * merged by `index`: the id and name as last given, the arguments appended piece by piece, as
 * OpenAI's own client does) or from a whole completion (`message.tool_calls`).
 *
 * @example
 * const reader = createToolCallReader();
 * for (const chunk of chunks) reader.push(chunk);
 * reader.calls(1); // [{ id: 'call_1', name: 'calc__add', arguments: '{"a":2,"b":3}' }]
 */
export function createToolCallReader() {
  const pending = new Map<number, { id: string; name: string; arguments: string }>();
  let roundBytes = 0;

  function take(position: number, item: unknown): void {
    if (!isRecord(item)) return;
    const index = typeof item.index === 'number' ? item.index : position;
    if (!Number.isSafeInteger(index) || index < 0 || index >= MAX_CALLS) return;
    let call = pending.get(index);
    if (call === undefined) {
      call = { id: '', name: '', arguments: '' };
      pending.set(index, call);
    }
    if (typeof item.id === 'string' && item.id !== '') call.id = item.id;
    const fn = isRecord(item.function) ? item.function : {};
    if (typeof fn.name === 'string' && fn.name !== '') call.name = fn.name;
    // Some servers send a whole completion's arguments as an object rather than JSON text.
    const piece =
      typeof fn.arguments === 'string'
        ? fn.arguments
        : isRecord(fn.arguments)
          ? JSON.stringify(fn.arguments)
          : '';
    if (call.arguments.length + piece.length > MAX_ARGUMENTS) {
      throw new HttpError(
        502,
        'tool_call_too_large',
        `the model wrote tool arguments longer than ${MAX_ARGUMENTS / 1024} KB`,
      );
    }
    roundBytes += piece.length;
    if (roundBytes > MAX_ROUND_ARGUMENTS) {
      throw new HttpError(
        502,
        'tool_call_too_large',
        `the model wrote more than ${MAX_ROUND_ARGUMENTS / 1024 / 1024} MB of tool arguments in one round`,
      );
    }
    call.arguments += piece;
  }

  return {
    /** Takes a chunk (or a whole completion); anything else in it is ignored. */
    push(chunk: unknown): void {
      if (!isRecord(chunk) || !Array.isArray(chunk.choices)) return;
      const choice: unknown = chunk.choices[0];
      if (!isRecord(choice)) return;
      const part = isRecord(choice.delta) ? choice.delta : choice.message;
      if (!isRecord(part) || !Array.isArray(part.tool_calls)) return;
      for (const [position, item] of (part.tool_calls as unknown[]).entries()) take(position, item);
    },

    /** The calls in index order, each with a unique id (`call_<round>_<index>` when it had none). */
    calls(round: number): ToolCall[] {
      const seen = new Set<string>();
      return [...pending.entries()]
        .sort(([a], [b]) => a - b)
        .filter(([, call]) => call.name !== '' || call.arguments !== '')
        .map(([index, call]) => {
          const id =
            CALL_ID.test(call.id) && !seen.has(call.id) ? call.id : `call_${round}_${index}`;
          seen.add(id);
          return { id, name: call.name, arguments: call.arguments };
        });
    },
  };
}

/**
 * A call's arguments as the object a tool takes: empty text is `{}`; text that is not JSON,
 * or JSON that is not an object, is an error the model is told about.
 *
 * @example
 * parseArguments('{"a":1}'); // { ok: true, value: { a: 1 } }
 * parseArguments('{"a":'); // { ok: false, error: 'arguments were not valid JSON' }
 */
export function parseArguments(
  text: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; error: string } {
  if (text.trim() === '') return { ok: true, value: {} };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: 'arguments were not valid JSON' };
  }
  if (!isRecord(value)) return { ok: false, error: 'arguments must be a JSON object' };
  return { ok: true, value };
}
