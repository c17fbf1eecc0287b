import type { Generated, Selectable } from 'kysely';
import type { IsoDate } from './types.js';

/** A name (or glob) Anthropic clients ask for, mapped to a local model by `palisade anthropic map`. */
export interface AnthropicModelTable {
  seq: Generated<number>;
  pattern: string;
  model: string;
  created_at: IsoDate;
}

export type AnthropicModelRow = Selectable<AnthropicModelTable>;
export const anthropicModelTableName = 'anthropic_model';
export type PartialDB = { [anthropicModelTableName]: AnthropicModelTable };
