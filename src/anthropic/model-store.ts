import { isoNow, type AnthropicModelRow, type Store } from '../store/index.js';
import { createModelMap, parseModelMapSpec, type ModelMap, type ModelMapSpec } from './models.js';

/** Adds or replaces a stored mapping (`palisade anthropic map PATTERN MODEL`). */
export async function mapAnthropicModel(
  store: Store,
  pattern: string,
  model: string,
): Promise<void> {
  for (const [what, value] of [
    ['pattern', pattern],
    ['model', model],
  ] as const) {
    if (value === '' || /[\s,=]/.test(value) || value.length > 256) {
      throw new Error(
        `the ${what} "${value}" must be one name of at most 256 characters, without spaces, commas or =`,
      );
    }
  }
  parseModelMapSpec(`${pattern}=${model}`);
  await store.db
    .insertInto('anthropic_model')
    .values({ pattern, model, created_at: isoNow() })
    .onConflict((oc) => oc.column('pattern').doUpdateSet({ model }))
    .execute();
}

export async function unmapAnthropicModel(store: Store, pattern: string): Promise<boolean> {
  const result = await store.db
    .deleteFrom('anthropic_model')
    .where('pattern', '=', pattern)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export async function listAnthropicModels(store: Store): Promise<AnthropicModelRow[]> {
  return store.db.selectFrom('anthropic_model').selectAll().orderBy('seq').execute();
}

/**
 * The model map the server uses: entries stored with `palisade anthropic map` first (the
 * operator's latest word), then those from PALISADE_ANTHROPIC_MODELS; rebuilt when the
 * database changes, so the CLI works while the server runs.
 */
export function createModelMapSource(store: Store, configured: ModelMapSpec): () => ModelMap {
  const select = store.sqlite.prepare('SELECT pattern, model FROM anthropic_model ORDER BY seq');
  let seen = -1;
  let map: ModelMap = createModelMap(configured.entries, configured.fallback);
  return () => {
    const version = store.dataVersion();
    if (version !== seen) {
      seen = version;
      const stored = select.all() as Array<{ pattern: string; model: string }>;
      map = createModelMap(
        [...stored.map((r) => [r.pattern, r.model] as [string, string]), ...configured.entries],
        configured.fallback,
      );
    }
    return map;
  };
}
