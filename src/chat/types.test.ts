import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as web from '../web/api.js';
import type * as chat from './types.js';

/** True only when A and B are mutually assignable. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const checks: [
  Same<chat.ModelInfo, web.ModelInfo>,
  Same<chat.Conversation, web.Conversation>,
  Same<chat.ChatMessage, web.ChatMessage>,
  Same<chat.ChatStreamEvent, web.ChatStreamEvent>,
  Same<chat.ChatUsage, web.Usage>,
] = [true, true, true, true, true];

test('the server spells the chat shapes as the web contract does (checked by tsc)', () => {
  assert.deepEqual(checks, [true, true, true, true, true]);
});
