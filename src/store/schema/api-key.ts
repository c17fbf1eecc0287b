import type { Generated, Selectable } from 'kysely';
import type { IsoDate, JsonText } from './types.js';

export type KeyScope = 'inference' | 'admin';

export interface ApiKeyTable {
  id: string;
  name: string;
  owner: string | null;
  scope: KeyScope;
  /** SHA-256 (hex) of the whole key; the key itself is never stored. */
  hash: string;
  /** The last four characters, to tell keys apart in listings. */
  hint: string;
  /** Model name globs the key may use; null means every model. */
  models: JsonText<string[]> | null;
  expires_at: IsoDate | null;
  rpm: number | null;
  max_streams: number | null;
  created_at: IsoDate;
  last_used_at: IsoDate | null;
  revoked_at: IsoDate | null;
  seq: Generated<number>;
}

export type ApiKeyRow = Selectable<ApiKeyTable>;
export const apiKeyTableName = 'api_key';
export type PartialDB = { [apiKeyTableName]: ApiKeyTable };
