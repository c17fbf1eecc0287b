import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { ChatMessage, Conversation } from './types.js';
import {
  isoNow,
  type ChatMessageRow,
  type ChatMessageStatus,
  type ConversationRow,
  type Store,
} from '../store/index.js';
import { DEFAULT_TITLE } from './schemas.js';
import { autoTitle } from './title.js';

const LIST_LIMIT = 200;

export function toConversation(row: ConversationRow): Conversation {
  return {
    id: row.id,
    title: row.title,
    system_prompt: row.system_prompt,
    model: row.model,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

export function toMessage(row: ChatMessageRow): ChatMessage {
  return {
    id: row.id,
    role: row.role,
    content: row.content,
    model: row.model,
    status: row.status,
    error: row.error,
    prompt_tokens: row.prompt_tokens,
    completion_tokens: row.completion_tokens,
    created_at: row.created_at,
  };
}

/** `text` as a LIKE pattern matching it anywhere, its `%`, `_` and `\` taken literally. */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/**
 * `title` where the stored title is still the default: decided by the row as it is when
 * written, so a rename made meanwhile is kept.
 */
function replacingDefault(title: string) {
  const current = sql.ref<string>('title');
  return sql<string>`case when ${current} = ${DEFAULT_TITLE} then ${title} else ${current} end`;
}

/** How an answer begins: a new user message (a send) or the old answer removed (a regenerate). */
export type AnswerStart =
  | { kind: 'send'; content: string; model: string }
  | { kind: 'regenerate'; replaces: number | undefined; model: string };

export interface StartedAnswer {
  user: ChatMessageRow | undefined;
  assistant: ChatMessageRow;
  conversation: ConversationRow;
}

export interface AnswerEnd {
  status: Exclude<ChatMessageStatus, 'streaming'>;
  content: string;
  error: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
}

/**
 * The chat's tables, always through the owning user: every read and write of a conversation
 * names `user_id`, so one user's id never reaches another user's rows.
 *
 * @example
 * const conversations = createConversations(store);
 * const row = await conversations.get(user.id, id); // undefined for someone else's
 */
export function createConversations(store: Store) {
  const { db } = store;

  return {
    /** Newest activity first; `query` matches titles and message contents. */
    list(userId: string, query?: string): Promise<ConversationRow[]> {
      let select = db.selectFrom('conversation').selectAll().where('user_id', '=', userId);
      if (query !== undefined && query !== '') {
        const pattern = containsPattern(query);
        select = select.where(({ or, exists, selectFrom }) =>
          or([
            sql<boolean>`${sql.ref('conversation.title')} like ${pattern} escape '\\'`,
            exists(
              selectFrom('chat_message')
                .select(sql.lit(1).as('one'))
                .whereRef('chat_message.conversation_id', '=', 'conversation.id')
                .where(
                  sql<boolean>`${sql.ref('chat_message.content')} like ${pattern} escape '\\'`,
                ),
            ),
          ]),
        );
      }
      return select
        .orderBy('updated_at', 'desc')
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .limit(LIST_LIMIT)
        .execute();
    },

    async create(
      userId: string,
      input: { title?: string; model?: string; system_prompt?: string },
    ): Promise<ConversationRow> {
      const now = isoNow();
      const row: ConversationRow = {
        id: randomUUID(),
        user_id: userId,
        title: input.title ?? DEFAULT_TITLE,
        system_prompt: input.system_prompt ?? '',
        model: input.model ?? null,
        created_at: now,
        updated_at: now,
      };
      await db.insertInto('conversation').values(row).execute();
      return row;
    },

    get(userId: string, id: string): Promise<ConversationRow | undefined> {
      return db
        .selectFrom('conversation')
        .selectAll()
        .where('id', '=', id)
        .where('user_id', '=', userId)
        .executeTakeFirst();
    },

    update(
      userId: string,
      id: string,
      patch: { title?: string; system_prompt?: string; model?: string | null },
    ): Promise<ConversationRow | undefined> {
      return db
        .updateTable('conversation')
        .set({ ...patch, updated_at: isoNow() })
        .where('id', '=', id)
        .where('user_id', '=', userId)
        .returningAll()
        .executeTakeFirst();
    },

    /** Deletes a conversation (its messages cascade); false when the user has none by that id. */
    async remove(userId: string, id: string): Promise<boolean> {
      const result = await db
        .deleteFrom('conversation')
        .where('id', '=', id)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    /** A conversation's messages in order. */
    messages(userId: string, conversationId: string): Promise<ChatMessageRow[]> {
      return db
        .selectFrom('chat_message')
        .innerJoin('conversation', 'conversation.id', 'chat_message.conversation_id')
        .selectAll('chat_message')
        .where('chat_message.conversation_id', '=', conversationId)
        .where('conversation.user_id', '=', userId)
        .orderBy('chat_message.id')
        .execute();
    },

    /**
     * Stores the start of an answer in one transaction: the user's message (or the removal of
     * the answer being regenerated), an empty `streaming` assistant message, and the
     * conversation's model, time and (while it is the default) title. Undefined when the
     * conversation is gone.
     */
    start(
      userId: string,
      conversationId: string,
      start: AnswerStart,
      firstUserContent: string | undefined,
    ): Promise<StartedAnswer | undefined> {
      return db.transaction().execute(async (trx) => {
        const now = isoNow();
        const title = firstUserContent === undefined ? undefined : autoTitle(firstUserContent);
        const updated = await trx
          .updateTable('conversation')
          .set({
            model: start.model,
            updated_at: now,
            ...(title === undefined ? {} : { title: replacingDefault(title) }),
          })
          .where('id', '=', conversationId)
          .where('user_id', '=', userId)
          .returningAll()
          .executeTakeFirst();
        if (updated === undefined) return undefined;

        let user: ChatMessageRow | undefined;
        if (start.kind === 'send') {
          user = await trx
            .insertInto('chat_message')
            .values({
              conversation_id: conversationId,
              role: 'user',
              content: start.content,
              model: null,
              status: 'complete',
              error: null,
              prompt_tokens: null,
              completion_tokens: null,
              created_at: now,
            })
            .returningAll()
            .executeTakeFirstOrThrow();
          await trx
            .insertInto('chat_usage')
            .values({
              user_id: userId,
              model: null,
              messages: 1,
              prompt_tokens: 0,
              completion_tokens: 0,
              created_at: now,
            })
            .execute();
        } else if (start.replaces !== undefined) {
          await trx
            .deleteFrom('chat_message')
            .where('id', '=', start.replaces)
            .where('conversation_id', '=', conversationId)
            .execute();
        }
        const assistant = await trx
          .insertInto('chat_message')
          .values({
            conversation_id: conversationId,
            role: 'assistant',
            content: '',
            model: start.model,
            status: 'streaming',
            error: null,
            prompt_tokens: null,
            completion_tokens: null,
            created_at: now,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        return { user, assistant, conversation: updated };
      });
    },

    /** Stores how an answer ended, in one write per table. */
    finish(
      userId: string,
      assistant: ChatMessageRow,
      end: AnswerEnd,
    ): Promise<{ message: ChatMessageRow; conversation: ConversationRow } | undefined> {
      return db.transaction().execute(async (trx) => {
        const message = await trx
          .updateTable('chat_message')
          .set({
            status: end.status,
            content: end.content,
            error: end.error,
            prompt_tokens: end.promptTokens,
            completion_tokens: end.completionTokens,
          })
          .where('id', '=', assistant.id)
          .returningAll()
          .executeTakeFirst();
        // The tokens were spent whatever happens to the conversation afterwards.
        await trx
          .insertInto('chat_usage')
          .values({
            user_id: userId,
            model: assistant.model,
            messages: 1,
            prompt_tokens: end.promptTokens ?? 0,
            completion_tokens: end.completionTokens ?? 0,
            created_at: isoNow(),
          })
          .execute();
        const conversation = await trx
          .updateTable('conversation')
          .set({ updated_at: isoNow() })
          .where('id', '=', assistant.conversation_id)
          .where('user_id', '=', userId)
          .returningAll()
          .executeTakeFirst();
        // Deleted while it was answered: nothing is left to show.
        if (message === undefined || conversation === undefined) return undefined;
        return { message, conversation };
      });
    },

    /** Tokens and messages of all the user's chats, deleted conversations included. */
    async usage(userId: string) {
      const row = await db
        .selectFrom('chat_usage')
        .where('user_id', '=', userId)
        .select(({ fn }) => [
          fn.sum<number | null>('prompt_tokens').as('prompt_tokens'),
          fn.sum<number | null>('completion_tokens').as('completion_tokens'),
          fn.sum<number | null>('messages').as('messages'),
        ])
        .executeTakeFirst();
      return {
        prompt_tokens: Number(row?.prompt_tokens ?? 0),
        completion_tokens: Number(row?.completion_tokens ?? 0),
        messages: Number(row?.messages ?? 0),
      };
    },

    /**
     * Answers a crash left `streaming` (the process died mid-answer) are marked failed, so
     * none stays `streaming` forever. Run at start, before any answer begins.
     */
    async sweepInterrupted(): Promise<number> {
      const result = await db
        .updateTable('chat_message')
        .set({ status: 'error', error: 'the server stopped before this answer was finished' })
        .where('status', '=', 'streaming')
        .executeTakeFirst();
      return Number(result.numUpdatedRows);
    },
  };
}

export type Conversations = ReturnType<typeof createConversations>;
