import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportConversation, safeFilename, toMarkdown } from './export.js';
import type { ChatMessage, Conversation } from './types.js';

const conversation: Conversation = {
  id: '6f0e9a44-8d53-4c1e-9a55-1b2c3d4e5f60',
  title: 'Lists\nin Python',
  system_prompt: 'Be brief.\n\nUse code.',
  model: 'qwen3',
  created_at: '2026-01-01T00:00:00.000Z',
  updated_at: '2026-01-01T00:00:01.000Z',
};

function message(partial: Partial<ChatMessage>): ChatMessage {
  return {
    id: 1,
    role: 'user',
    content: '',
    model: null,
    status: 'complete',
    error: null,
    prompt_tokens: null,
    completion_tokens: null,
    created_at: '2026-01-01T00:00:00.000Z',
    ...partial,
  };
}

test('filenames keep ASCII letters, digits and dashes only', () => {
  assert.equal(safeFilename('../../etc/passwd"\r\nX: y'), 'etc-passwd-X-y');
  assert.equal(safeFilename('Café au lait'), 'Cafe-au-lait');
  assert.equal(safeFilename("\"; filename*=UTF-8''evil.sh"), 'filename-UTF-8-evil-sh');
  assert.equal(safeFilename('日本語'), 'conversation');
  assert.equal(safeFilename('..'), 'conversation');
  assert.ok(safeFilename('word '.repeat(100)).length <= 80);
});

test('Markdown has the title, the system prompt, then each message under its heading', () => {
  const markdown = toMarkdown(conversation, [
    message({ id: 1, content: 'How do I reverse a list?' }),
    message({ id: 2, role: 'assistant', model: 'qwen3', content: 'Use `reversed()`.' }),
    message({ id: 3, content: 'And in place?' }),
    message({ id: 4, role: 'assistant', model: 'qwen3', status: 'stopped', content: 'Call' }),
    message({ id: 5, role: 'assistant', status: 'error', error: 'upstream\nfailed' }),
  ]);
  assert.equal(
    markdown,
    [
      '# Lists in Python',
      '',
      '**System prompt**',
      '',
      '> Be brief.',
      '>',
      '> Use code.',
      '',
      '## User',
      '',
      'How do I reverse a list?',
      '',
      '## Assistant (qwen3)',
      '',
      'Use `reversed()`.',
      '',
      '## User',
      '',
      'And in place?',
      '',
      '## Assistant (qwen3)',
      '',
      'Call',
      '',
      '_(stopped)_',
      '',
      '## Assistant',
      '',
      '_(failed: upstream failed)_',
      '',
    ].join('\n'),
  );
});

test('without a system prompt, the messages follow the title', () => {
  const markdown = toMarkdown({ ...conversation, system_prompt: '  ' }, [
    message({ content: 'hi' }),
  ]);
  assert.equal(markdown, '# Lists in Python\n\n## User\n\nhi\n');
});

test('the JSON export holds the conversation and its messages', () => {
  const messages = [message({ content: 'hi' })];
  const file = exportConversation(conversation, messages, 'json');
  assert.equal(file.filename, 'Lists-in-Python.json');
  assert.match(file.contentType, /^application\/json/);
  assert.deepEqual(JSON.parse(file.body), { conversation, messages });
  const md = exportConversation(conversation, messages, 'markdown');
  assert.equal(md.filename, 'Lists-in-Python.md');
  assert.match(md.contentType, /^text\/markdown/);
});
