/**
 * The chat face: conversations and streamed answers for the web app, under `/api`, with the
 * tools of the user's remote MCP servers offered to the model (`mcpServersFor`).
 * The routes and shapes are those of the web contract (src/web/api.ts, "Chat").
 */
export { chat, type ChatOptions } from './plugin.js';
export type { McpServerEntry, McpToolboxOptions } from './mcp-tools.js';
export { createConversations, type Conversations } from './conversations.js';
export { exportConversation, safeFilename, toMarkdown, type ExportFormat } from './export.js';
export { autoTitle } from './title.js';
export type { ChatMessage, ChatStreamEvent, ChatUsage, Conversation, ModelInfo } from './types.js';
