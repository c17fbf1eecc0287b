/**
 * Anthropic Messages API <-> OpenAI chat completions, as pure functions over the gateway's
 * routing. A `/v1/messages` handler:
 *
 * 1. `parseMessagesRequest(body)`; `models.resolve(req.model, isLocal)` (404 when undefined);
 * 2. `applyPolicy('chat', toChatCompletions(req, localModel), policy)` (clamps max_tokens),
 *    then forward to `/v1/chat/completions` as the OpenAI route does;
 * 3. JSON: `fromChatCompletion(json, { ...responseOptions(req), messageId? })`;
 *    SSE: `createStreamTranslator({ ...responseOptions(req), requestId })`, feeding it the
 *    chunks of `createSseDecoder().push(bytes)` and writing the frames it returns;
 * 4. errors through `sendError(..., anthropicErrorBody)`.
 */
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
export { messages, type MessagesOptions } from './plugin.js';
export {
  createModelMapSource,
  listAnthropicModels,
  mapAnthropicModel,
  unmapAnthropicModel,
} from './model-store.js';
export {
  MAX_JSON_DEPTH,
  RAW_ARGUMENTS_KEY,
  parseToolArguments,
  repairJson,
  createJsonRepairStream,
  type JsonRepairStream,
} from './json-repair.js';
export type * from './types.js';
