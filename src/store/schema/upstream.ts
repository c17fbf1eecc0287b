import type { Selectable } from 'kysely';
import type { IsoDate } from './types.js';

export interface UpstreamTable {
  name: string;
  url: string;
  /** Name of an environment variable holding the upstream's API key. */
  api_key_env: string | null;
  /** The upstream's API key sealed with the `upstream-keys` subkey (`enc$v1$...`). */
  api_key_enc: string | null;
  created_at: IsoDate;
}

export type UpstreamRow = Selectable<UpstreamTable>;
export const upstreamTableName = 'upstream';
export type PartialDB = { [upstreamTableName]: UpstreamTable };
