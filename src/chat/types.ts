/**
 * The chat's wire shapes, as the web app's contract (src/web/api.ts) spells them. They are
 * repeated here because server code does not import the front end; types.test.ts checks
 * both spellings stay the same.
 */
import type { ChatMessageStatus, ChatRole } from '../store/index.js';

export interface ModelInfo {
  id: string;
  upstream: string;
}

export interface Conversation {
  id: string;
  title: string;
  system_prompt: string;
  model: string | null;
  created_at: string;
  updated_at: string;
}

export interface ChatMessage {
  id: number;
  role: ChatRole;
  content: string;
  model: string | null;
  status: ChatMessageStatus;
  error: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  created_at: string;
}

/** Events of the stream answering `POST /api/conversations/:id/messages` and `/regenerate`. */
export type ChatStreamEvent =
  | { type: 'user'; message: ChatMessage }
  | { type: 'assistant'; message: ChatMessage }
  | { type: 'delta'; text: string }
  | { type: 'done'; message: ChatMessage; conversation: Conversation }
  | { type: 'error'; message: string; code: string; request_id: string }
  /** The model called one of the user's MCP tools; `arguments` is its JSON text, cut to 2 KB. */
  | { type: 'tool_call'; id: string; name: string; arguments: string }
  /** The call's outcome (`content` cut to 2 KB); the model got up to 64 KB of it. */
  | { type: 'tool_result'; id: string; name: string; ok: boolean; content: string }
  /** Something the user should know that is not an error (an MCP server left out, say). */
  | { type: 'notice'; message: string };

export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  messages: number;
}
