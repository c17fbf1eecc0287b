import type { Command } from 'commander';
import { listAnthropicModels, mapAnthropicModel, unmapAnthropicModel } from '../anthropic/index.js';
import { CliError, printRows, withContext, type GlobalOptions } from './context.js';

/**
 * `palisade anthropic map|unmap|list`: which local model answers when an Anthropic client
 * (Claude Code, the Anthropic SDK) asks for a `claude-*` model. Works while the server runs.
 */
export function registerAnthropicCommands(program: Command): void {
  const anthropic = program
    .command('anthropic')
    .description('map the model names Anthropic clients ask for to local models');

  anthropic
    .command('map <pattern> <model>')
    .description("map a name or glob to a local model, e.g. map 'claude-*' qwen3:8b")
    .action(async (pattern: string, model: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        try {
          await mapAnthropicModel(ctx.store, pattern, model);
        } catch (error) {
          throw new CliError(
            (error as Error).message.replace('PALISADE_ANTHROPIC_MODELS: ', ''),
            2,
          );
        }
        ctx.audit.record({
          action: 'anthropic.mapped',
          actor: 'cli',
          target: pattern,
          details: { name: pattern, model },
        });
        process.stdout.write(`Anthropic model "${pattern}" now answered by "${model}"\n`);
      });
    });

  anthropic
    .command('unmap <pattern>')
    .description('remove a stored mapping')
    .action(async (pattern: string, _f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<GlobalOptions>();
      await withContext(flags, async (ctx) => {
        if (!(await unmapAnthropicModel(ctx.store, pattern))) {
          throw new CliError(`no mapping for "${pattern}" (palisade anthropic list shows them)`);
        }
        ctx.audit.record({
          action: 'anthropic.unmapped',
          actor: 'cli',
          target: pattern,
          details: { name: pattern },
        });
        process.stdout.write(`removed the mapping for "${pattern}"\n`);
      });
    });

  anthropic
    .command('list')
    .description(
      'list mappings in the order they are tried: stored ones, then PALISADE_ANTHROPIC_MODELS',
    )
    .option('--json', 'print JSON')
    .action(async (_f: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      await withContext(flags, async (ctx) => {
        const rows = (await listAnthropicModels(ctx.store)).map((r) => ({
          pattern: r.pattern,
          model: r.model,
          source: 'stored',
        }));
        const configured = ctx.config.anthropicModels
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean)
          .map((entry) => {
            const at = entry.indexOf('=');
            return at === -1
              ? { pattern: '(fallback)', model: entry, source: 'PALISADE_ANTHROPIC_MODELS' }
              : {
                  pattern: entry.slice(0, at),
                  model: entry.slice(at + 1),
                  source: 'PALISADE_ANTHROPIC_MODELS',
                };
          });
        printRows([...rows, ...configured], flags.json);
      });
    });
}
