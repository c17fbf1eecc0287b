import type { Command } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { Agent, request } from 'undici';
import {
  homeFile,
  isLoopbackHost,
  loadConfig,
  type Config,
  type FlagValues,
} from '../config/index.js';
import {
  assertUpstreamAllowed,
  guardedLookup,
  listStoredUpstreams,
  upstreamApiKey,
  upstreamKeyBox,
} from '../gateway/index.js';
import { isTotpRequired, keyFiles } from '../admin/index.js';
import { listUsers } from '../auth/index.js';
import { listModels, modelsDirOf } from '../local/index.js';
import { readMeshEndpoint } from '../mesh/index.js';
import { printRows, withContext, type GlobalOptions } from './context.js';

interface Check {
  check: string;
  ok: boolean;
  detail: string;
}

function modeOf(path: string): number {
  return statSync(path).mode & 0o777;
}

/** Asks an upstream for its models the way the server would: through the SSRF guard, with its key. */
async function probe(url: string, apiKey: string | undefined): Promise<string | undefined> {
  const dispatcher = new Agent({ connect: { lookup: guardedLookup(), timeout: 2_000 } });
  try {
    await assertUpstreamAllowed(url);
    const base = url.replace(/\/+$/, '').replace(/\/v1$/, '');
    const response = await request(`${base}/v1/models`, {
      dispatcher,
      headers: apiKey ? { authorization: `Bearer ${apiKey}` } : {},
      headersTimeout: 2_000,
      bodyTimeout: 2_000,
    });
    await response.body.dump();
    return response.statusCode === 200 ? undefined : `answered ${response.statusCode}`;
  } catch (error) {
    const code = (error as { code?: string }).code;
    return code && code !== 'ERR_SSRF_BLOCKED' ? code : (error as Error).message;
  } finally {
    await dispatcher.close();
  }
}

/** Checks what usually goes wrong: Node version, home permissions, key file, database, upstreams. */
async function diagnose(options: GlobalOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  checks.push({
    check: 'node',
    ok: major > 20 || (major === 20 && minor >= 19),
    detail: `${process.versions.node} (needs 20.19 or newer)`,
  });

  const flags: FlagValues = options.home ? { home: options.home } : {};
  const config = loadConfig({ flags, env: process.env });
  checks.push({
    check: 'bind',
    ok: true,
    detail: isLoopbackHost(config.host)
      ? `${config.host}:${config.port} (loopback: open until the first key exists)`
      : `${config.host}:${config.port} (exposed: API keys required)`,
  });

  await withContext(options, async (ctx) => {
    const home = ctx.config.home;
    checks.push({
      check: 'home',
      ok: modeOf(home) === 0o700,
      detail: `${home} mode ${modeOf(home).toString(8)}`,
    });
    for (const file of ['secret.key', 'palisade.db', 'audit.jsonl', 'mesh.token'] as const) {
      const path = homeFile(home, file);
      if (!existsSync(path)) {
        const optional = file === 'audit.jsonl' || file === 'mesh.token';
        checks.push({ check: file, ok: optional, detail: 'not created yet' });
        continue;
      }
      const mode = modeOf(path);
      checks.push({
        check: file,
        ok: (mode & 0o077) === 0,
        detail: `mode ${mode.toString(8)}${(mode & 0o077) === 0 ? '' : ': run chmod 600'}`,
      });
    }
    const pidFile = homeFile(home, 'palisade.pid');
    checks.push({
      check: 'server',
      ok: true,
      detail: existsSync(pidFile)
        ? `pid file present (pid ${readFileSync(pidFile, 'utf8').trim()})`
        : 'not running on this home',
    });
    checks.push({ check: 'mesh', ok: true, detail: await meshBrokerState(home) });
    const integrity = ctx.store.sqlite.pragma('quick_check', { simple: true });
    checks.push({
      check: 'database',
      ok: integrity === 'ok',
      detail: `quick_check: ${String(integrity)}`,
    });

    const users = listUsers(ctx.store);
    const admins = users.filter((u) => u.role === 'admin' && u.disabled_at === null).length;
    const withTotp = users.filter((u) => u.totp_enabled_at !== null).length;
    checks.push({
      check: 'accounts',
      ok: true,
      detail:
        users.length === 0
          ? 'no web accounts yet: palisade users create NAME --admin, or the setup page'
          : `${users.length} (${admins} active admin${admins === 1 ? '' : 's'}, ${withTotp} with two-factor sign-in${isTotpRequired(ctx.store) ? ', required for all' : ''})`,
    });
    const files = keyFiles(home);
    const leftover = [files.staged, files.previous].filter((path) => existsSync(path));
    if (leftover.length > 0) {
      checks.push({
        check: 'secret rotation',
        ok: false,
        detail: `an interrupted palisade secret rotate left ${leftover.join(', ')}: run palisade secret rotate again (or palisade serve) to finish it`,
      });
    }

    checks.push(...(await modelChecks(ctx.config)));

    const box = upstreamKeyBox(ctx.masterKey);
    const upstreams = [
      ...ctx.config.upstreams.map((u) => ({ ...u, apiKey: undefined })),
      ...(await listStoredUpstreams(ctx.store)).map((row) => ({
        ...row,
        apiKey: upstreamApiKey(row, box),
      })),
    ];
    if (upstreams.length === 0) {
      checks.push({
        check: 'upstreams',
        ok: true,
        detail: 'none configured: local ports are probed at start',
      });
    }
    for (const upstream of upstreams) {
      const problem = await probe(upstream.url, upstream.apiKey);
      checks.push({
        check: `upstream ${upstream.name}`,
        ok: problem === undefined,
        detail:
          problem === undefined
            ? `${upstream.url} answers /v1/models`
            : `${upstream.url}: ${problem}`,
      });
    }
  });
  return checks;
}

/**
 * The models folder (every .gguf passes the header check) and the embedded runtime (the
 * prebuilt llama.cpp binary loads, and on which device), when embedded inference is on.
 */
async function modelChecks(config: Config): Promise<Check[]> {
  if (!config.local && config.models.length === 0) {
    return [{ check: 'models', ok: true, detail: 'embedded inference off (PALISADE_LOCAL=false)' }];
  }
  const checks: Check[] = [];
  const listed = config.local ? await listModels(modelsDirOf(config.home)) : [];
  const invalid = listed.filter((m) => m.status === 'invalid');
  const ready = listed.filter((m) => m.status === 'ok').length;
  const partial = listed.filter((m) => m.status === 'partial').length;
  checks.push({
    check: 'models',
    ok: invalid.length === 0,
    detail:
      invalid.length > 0
        ? invalid
            .map(
              (m) => `${m.name}: ${m.error ?? 'not valid GGUF'} (palisade models remove ${m.name})`,
            )
            .join('; ')
        : `${ready} in ${modelsDirOf(config.home)}${partial > 0 ? `, ${partial} partial download(s)` : ''}${config.models.length > 0 ? `, ${config.models.length} named with --model` : ''}`,
  });
  try {
    const { getLlama } = await import('node-llama-cpp');
    const llama = await getLlama({
      gpu:
        config.localGpu === 'auto' ? 'auto' : config.localGpu === 'false' ? false : config.localGpu,
      build: 'never',
      skipDownload: true,
      progressLogs: false,
    });
    checks.push({
      check: 'embedded runtime',
      ok: true,
      detail: `llama.cpp prebuilt binary loads; device: ${llama.gpu === false ? 'CPU' : llama.gpu}`,
    });
    await llama.dispose();
  } catch (error) {
    checks.push({
      check: 'embedded runtime',
      ok: false,
      detail: `${(error as Error).message.split('\n')[0]} (PALISADE_LOCAL_GPU=false uses the CPU build; npm install restores the binaries)`,
    });
  }
  return checks;
}

/** Whether the agent mesh broker of `home` answers; never a failure, only a finding. */
async function meshBrokerState(home: string): Promise<string> {
  const { url } = readMeshEndpoint(home);
  if (url === undefined) return 'no broker running (palisade serve, or palisade mcp, starts one)';
  try {
    const response = await request(`${url}/mesh/health`, {
      headersTimeout: 2000,
      bodyTimeout: 2000,
    });
    await response.body.text();
    if (response.statusCode === 200) return `broker answers at ${url}`;
    return `${url} answered ${response.statusCode} to /mesh/health`;
  } catch {
    return `mesh.url names ${url} but nothing answers there (left by a server that crashed?); palisade serve starts a new one`;
  }
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check the installation: Node, home permissions, database, models, upstreams')
    .option('--json', 'print JSON')
    .action(async (_f: unknown, command: Command) => {
      const options = command.optsWithGlobals<{ json?: boolean } & GlobalOptions>();
      const checks = await diagnose(options);
      printRows(
        checks.map((c) => ({ status: c.ok ? 'ok' : 'FAIL', check: c.check, detail: c.detail })),
        options.json,
      );
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
}
