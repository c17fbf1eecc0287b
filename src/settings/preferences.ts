import { fromJsonText, toJsonText, type JsonText, type Store } from '../store/index.js';

const DEFAULT_MODEL = 'default_model';

/** The model a user's new conversations start with, or null for the server's choice. */
export function defaultModelFor(store: Store, userId: string): string | null {
  const row = store.sqlite
    .prepare<[string, string], { value: JsonText<unknown> }>(
      'select value from user_setting where user_id = ? and key = ?',
    )
    .get(userId, DEFAULT_MODEL);
  const value = row === undefined ? null : fromJsonText(row.value);
  return typeof value === 'string' ? value : null;
}

/** Sets (or with null, clears) a user's default model. */
export function setDefaultModel(store: Store, userId: string, model: string | null): void {
  if (model === null) {
    store.sqlite
      .prepare('delete from user_setting where user_id = ? and key = ?')
      .run(userId, DEFAULT_MODEL);
    return;
  }
  store.sqlite
    .prepare(
      `insert into user_setting (user_id, key, value) values (?, ?, ?)
       on conflict (user_id, key) do update set value = excluded.value`,
    )
    .run(userId, DEFAULT_MODEL, toJsonText(model));
}
