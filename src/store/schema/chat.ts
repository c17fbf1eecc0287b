import type { Generated, Selectable } from 'kysely';
import type { IsoDate } from './types.js';

export interface ConversationTable {
  /** UUIDv4. */
  id: string;
  user_id: string;
  title: string;
  system_prompt: string;
  /** The model last used or picked; null until one is. */
  model: string | null;
  created_at: IsoDate;
  updated_at: IsoDate;
}

export type ChatRole = 'user' | 'assistant';
/** `streaming` while an answer is written; `stopped` when the user stopped it; `error` when it failed. */
export type ChatMessageStatus = 'complete' | 'streaming' | 'stopped' | 'error';

export interface ChatMessageTable {
  id: Generated<number>;
  conversation_id: string;
  role: ChatRole;
  content: string;
  model: string | null;
  status: ChatMessageStatus;
  error: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  created_at: IsoDate;
}

/** What a user's chat cost, one row per stored message; kept when conversations are deleted. */
export interface ChatUsageTable {
  id: Generated<number>;
  user_id: string;
  model: string | null;
  /** Messages this row counts: 1 (a user message, or an answer). */
  messages: number;
  prompt_tokens: number;
  completion_tokens: number;
  created_at: IsoDate;
}

export type ConversationRow = Selectable<ConversationTable>;
export type ChatMessageRow = Selectable<ChatMessageTable>;

export type PartialDB = {
  conversation: ConversationTable;
  chat_message: ChatMessageTable;
  chat_usage: ChatUsageTable;
};
