/**
 * Starts the Portkey AI gateway (`@portkey-ai/gateway`, its Node build) for the benchmark.
 * Usage: node --import tsx bench/portkey-server.ts --port P
 *
 * Its entry, build/start-server.js, calls `serve({ fetch, port })` from @hono/node-server
 * itself, so two options cannot be passed in: it binds every interface, and it keeps the
 * default `overrideGlobalObjects: true`, under which streaming requests fail with
 * 500 `TypeError: immutable`. A module resolve hook hands that one import a thin wrapper
 * whose `serve` adds `hostname: '127.0.0.1'` and `overrideGlobalObjects: false`; the gateway
 * code itself runs unchanged.
 */
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

// Loader hooks run on their own thread and take plain JavaScript, hence the source strings.
const HOOKS = `
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  const fromPortkey = (context.parentURL ?? '').includes('/@portkey-ai/gateway/');
  if (specifier !== '@hono/node-server' || !fromPortkey) return resolved;
  const real = JSON.stringify(resolved.url);
  const wrapper =
    'import { serve as realServe } from ' + real + ';' +
    'export * from ' + real + ';' +
    'export function serve(options, listener) {' +
    '  return realServe({ ...options, hostname: "127.0.0.1", overrideGlobalObjects: OVERRIDE }, listener);' +
    '}';
  return { url: 'data:text/javascript,' + encodeURIComponent(wrapper), shortCircuit: true };
}
`;

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8787' },
    // Portkey's own default; streaming then fails, so only for non-streaming comparisons.
    'override-global-objects': { type: 'boolean', default: false },
  },
});

const hooks = HOOKS.replace('OVERRIDE', String(values['override-global-objects']));
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

const entry = createRequire(import.meta.url).resolve('@portkey-ai/gateway/build/start-server.js');
// The entry reads its port from argv; --headless and production skip the log UI.
process.argv = [process.argv[0] ?? 'node', entry, `--port=${values.port}`, '--headless'];
process.env.NODE_ENV = 'production';
await import(pathToFileURL(entry).href);

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => process.exit(0));
}
