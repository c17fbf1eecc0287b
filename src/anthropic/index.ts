export {
  parseMessagesRequest,
  parseCountTokensRequest,
  toChatCompletions,
  MAX_CONTENT_BLOCKS,
  MAX_MESSAGES,
  MAX_STOP_SEQUENCES,
  MAX_TOOLS,
  TOOL_ERROR_PREFIX,
} from './request.js';
export {
  fromChatCompletion,
  findStopSequence,
  newMessageId,
  responseOptions,
  stopReasonFor,
  THINKING_SIGNATURE,
} from './response.js';
export {
  createSseDecoder,
  createStreamTranslator,
  parseSseChunks,
  sseFrame,
  MAX_SSE_LINE,
  type SseChunks,
  type StreamTranslator,
  type StreamTranslatorOptions,
} from './stream.js';
export { anthropicErrorBody, anthropicErrorType, type AnthropicErrorType } from './errors.js';
export {
  createModelMap,
  parseModelMapSpec,
  toAnthropicModelList,
  type AnthropicModelInfo,
  type AnthropicModelList,
  type ModelMap,
  type ModelMapEntries,
  type ModelMapSpec,
} from './models.js';
export { estimateTokens, TOKEN_ESTIMATE } from './count-tokens.js';
export {
  MAX_JSON_DEPTH,
  RAW_ARGUMENTS_KEY,
  parseToolArguments,
  repairJson,
  createJsonRepairStream,
  type JsonRepairStream,
} from './json-repair.js';
export type * from './types.js';
