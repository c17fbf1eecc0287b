/**
 * The parts of Anthropic's Messages API wire format that Palisade reads and writes.
 * Fields a local model cannot use (cache_control, citations, metadata, ...) are not kept.
 */

export type ImageMediaType = 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp';

export interface TextBlock {
  type: 'text';
  text: string;
}

export interface ImageBlock {
  type: 'image';
  source:
    { type: 'base64'; media_type: ImageMediaType; data: string } | { type: 'url'; url: string };
}

export interface ToolUseBlock {
  type: 'tool_use';
  id: string;
  name: string;
  input: Record<string, unknown>;
}

export interface ToolResultBlock {
  type: 'tool_result';
  tool_use_id: string;
  content?: string | Array<TextBlock | ImageBlock>;
  is_error?: boolean;
}

export interface ThinkingBlock {
  type: 'thinking';
  thinking: string;
  signature?: string;
}

export interface RedactedThinkingBlock {
  type: 'redacted_thinking';
  data: string;
}

export type ContentBlock =
  TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock;

export interface MessageParam {
  role: 'user' | 'assistant';
  content: string | ContentBlock[];
}

export interface Tool {
  name: string;
  description?: string;
  input_schema: Record<string, unknown>;
}

export type ToolChoice =
  | { type: 'auto' | 'any' | 'none'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean };

export type ThinkingConfig =
  { type: 'enabled'; budget_tokens: number } | { type: 'adaptive' } | { type: 'disabled' };

/** The body of `POST /v1/messages/count_tokens`: a Messages request without generation settings. */
export interface CountTokensRequest {
  model: string;
  messages: MessageParam[];
  system?: string | TextBlock[];
  tools?: Tool[];
  tool_choice?: ToolChoice;
  thinking?: ThinkingConfig;
}

/** The body of `POST /v1/messages`, validated. */
export interface MessagesRequest extends CountTokensRequest {
  max_tokens: number;
  stop_sequences?: string[];
  temperature?: number;
  top_p?: number;
  top_k?: number;
  stream?: boolean;
}

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use' | 'refusal';

export type ResponseBlock =
  TextBlock | { type: 'thinking'; thinking: string; signature: string } | ToolUseBlock;

export interface Usage {
  input_tokens: number;
  output_tokens: number;
}

/** A complete (non-streaming) Messages response. */
export interface AnthropicMessage {
  id: string;
  type: 'message';
  role: 'assistant';
  model: string;
  content: ResponseBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: Usage;
}

/** What the response translators need to know about the request. */
export interface ResponseOptions {
  /** The model name the client asked for; echoed back (not the local model's name). */
  requestModel: string;
  /** True when the request enabled thinking; otherwise upstream reasoning is dropped. */
  thinking: boolean;
  /** The request's stop sequences; `stop_sequence` is only ever set to one of these. */
  stopSequences?: readonly string[];
}
