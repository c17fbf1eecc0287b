import { truncateText, type ToolOutcome, type ToolSession } from './mcp-tools.js';
import { parseArguments, type ToolCall } from './tool-calls.js';
import type { ChatStreamEvent } from './types.js';

/** Model requests per answer: past this many rounds of tool calls the answer is cut off. */
export const MAX_TOOL_ROUNDS = 8;
/** Calls run per round; the model is told the others were not. */
export const MAX_CALLS_PER_ROUND = 16;
/** Arguments and results as shown to the user while the answer streams. */
export const DISPLAY_BYTES = 2048;

/** A message of the prompt sent upstream, tool calls and results included. */
export type PromptMessage =
  | { role: 'system' | 'user' | 'assistant'; content: string }
  | {
      role: 'assistant';
      content: string | null;
      tool_calls: Array<{
        id: string;
        type: 'function';
        function: { name: string; arguments: string };
      }>;
    }
  | { role: 'tool'; tool_call_id: string; content: string };

export interface ToolRound {
  /** The assistant's `tool_calls` message, then one `tool` message per call. */
  messages: PromptMessage[];
  /** A line of Markdown for the stored answer: ``> Used tool `calc__add` ``. */
  summary: string;
}

function failed(message: string): ToolOutcome {
  return { ok: false, content: JSON.stringify({ error: message }) };
}

async function outcomeOf(call: ToolCall, position: number, session: ToolSession) {
  if (position >= MAX_CALLS_PER_ROUND) {
    return failed(`not run: at most ${MAX_CALLS_PER_ROUND} tool calls are run at once`);
  }
  const args = parseArguments(call.arguments);
  if (!args.ok) return failed(args.error);
  return session.call(call.name, args.value);
}

/**
 * Runs the calls a model asked for, one after another: a `tool_call` event, the call, a
 * `tool_result` event (both cut to 2 KB for display; the model gets up to 64 KB). Rejects only
 * when the session is stopped.
 *
 * @example
 * const round = await runToolRound({ calls, text, session, send: (e) => sendEvent(out, e) });
 * prompt.push(...round.messages);
 */
export async function runToolRound(options: {
  calls: ToolCall[];
  /** What the model wrote this round before asking for the tools. */
  text: string;
  session: ToolSession;
  send: (event: ChatStreamEvent) => Promise<void>;
}): Promise<ToolRound> {
  const { calls, session, send } = options;
  const messages: PromptMessage[] = [
    {
      role: 'assistant',
      content: options.text === '' ? null : options.text,
      tool_calls: calls.map((call) => ({
        id: call.id,
        type: 'function',
        function: { name: call.name, arguments: call.arguments },
      })),
    },
  ];
  const used: string[] = [];
  for (const [position, call] of calls.entries()) {
    const name = call.name.slice(0, 64);
    await send({
      type: 'tool_call',
      id: call.id,
      name,
      arguments: truncateText(call.arguments, DISPLAY_BYTES),
    });
    const outcome = await outcomeOf(call, position, session);
    await send({
      type: 'tool_result',
      id: call.id,
      name,
      ok: outcome.ok,
      content: truncateText(outcome.content, DISPLAY_BYTES),
    });
    messages.push({ role: 'tool', tool_call_id: call.id, content: outcome.content });
    // A name the model made up may hold Markdown; offered names never do.
    const shown = name.replace(/[^a-zA-Z0-9_-]/g, '_') || '_';
    used.push(`\`${shown}\`${outcome.ok ? '' : ' (failed)'}`);
  }
  const summary = `> Used ${used.length === 1 ? 'tool' : 'tools'} ${used.join(', ')}`;
  return { messages, summary };
}
