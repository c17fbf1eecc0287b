import type { ChatMessage, Conversation } from './types.js';

export type ExportFormat = 'markdown' | 'json';

export interface ExportFile {
  filename: string;
  contentType: string;
  body: string;
}

const MAX_FILENAME = 80;

/**
 * A download name made of the title's ASCII letters, digits and dashes only, so no title
 * can break out of the header or name a path; "conversation" when nothing is left.
 *
 * @example
 * safeFilename('../../etc/passwd"\r\nX: y'); // 'etc-passwd-X-y'
 */
export function safeFilename(title: string): string {
  const name = title
    .normalize('NFKD')
    .replace(/[^A-Za-z0-9-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .slice(0, MAX_FILENAME)
    .replace(/^-+|-+$/g, '');
  return name === '' ? 'conversation' : name;
}

/** Text on one line: a title with line breaks would start a new Markdown block. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function heading(message: ChatMessage): string {
  if (message.role === 'user') return '## User';
  return message.model ? `## Assistant (${oneLine(message.model)})` : '## Assistant';
}

function note(message: ChatMessage): string | undefined {
  if (message.status === 'stopped') return '_(stopped)_';
  if (message.status === 'error') return `_(failed: ${oneLine(message.error ?? 'error')})_`;
  if (message.status === 'streaming') return '_(unfinished)_';
  return undefined;
}

/** The conversation as Markdown: its title, the system prompt, then each message under a heading. */
export function toMarkdown(conversation: Conversation, messages: ChatMessage[]): string {
  const blocks = [`# ${oneLine(conversation.title)}`];
  if (conversation.system_prompt.trim() !== '') {
    const quoted = conversation.system_prompt
      .split(/\r\n|\r|\n/)
      .map((line) => (line === '' ? '>' : `> ${line}`))
      .join('\n');
    blocks.push(`**System prompt**\n\n${quoted}`);
  }
  for (const message of messages) {
    const parts = [heading(message)];
    if (message.content !== '') parts.push(message.content);
    const status = note(message);
    if (status) parts.push(status);
    blocks.push(parts.join('\n\n'));
  }
  return `${blocks.join('\n\n')}\n`;
}

/**
 * A conversation as a file to download.
 *
 * @example
 * const file = exportConversation(conversation, messages, 'markdown');
 * reply.header('content-disposition', `attachment; filename="${file.filename}"`);
 */
export function exportConversation(
  conversation: Conversation,
  messages: ChatMessage[],
  format: ExportFormat,
): ExportFile {
  const name = safeFilename(conversation.title);
  if (format === 'json') {
    return {
      filename: `${name}.json`,
      contentType: 'application/json; charset=utf-8',
      body: `${JSON.stringify({ conversation, messages }, null, 2)}\n`,
    };
  }
  return {
    filename: `${name}.md`,
    contentType: 'text/markdown; charset=utf-8',
    body: toMarkdown(conversation, messages),
  };
}
