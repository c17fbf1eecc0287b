import { fromJsonText, isoNow, toJsonText, type JsonText, type Store } from '../store/index.js';

export interface InstanceSettings {
  require_totp: boolean;
}

const REQUIRE_TOTP = 'require_totp';

/**
 * True when an admin requires TOTP of every user (`instance_setting` key `require_totp`).
 * Read on each call: cheap, and a change by another process is seen at once.
 *
 * @example
 * api.register(apiScope, { ..., isTotpRequired: () => isTotpRequired(store) });
 */
export function isTotpRequired(store: Store): boolean {
  const row = store.sqlite
    .prepare<[string], { value: JsonText<unknown> }>(
      'select value from instance_setting where key = ?',
    )
    .get(REQUIRE_TOTP);
  return row !== undefined && fromJsonText(row.value) === true;
}

export function setTotpRequired(store: Store, required: boolean): void {
  store.sqlite
    .prepare(
      `insert into instance_setting (key, value, updated_at) values (?, ?, ?)
       on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at`,
    )
    .run(REQUIRE_TOTP, toJsonText(required), isoNow());
}

export function instanceSettings(store: Store): InstanceSettings {
  return { require_totp: isTotpRequired(store) };
}
