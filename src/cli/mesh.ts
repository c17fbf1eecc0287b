import { Option, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  formatDuration,
  homeFile,
  loadConfig,
  prepareHome,
  writePrivateFile,
  type FlagValues,
} from '../config/index.js';
import {
  createMeshClient,
  findGitRoot,
  MeshRequestError,
  MeshUnavailableError,
  readMeshEndpoint,
  streamEventsOnce,
  type EventView,
  type MeshClient,
  type MessageView,
  matchPeer,
  OPERATOR_AGENT,
  PEER_ID,
  type PeerView,
  type Scope,
} from '../mesh/index.js';
import { CliError, printRows, type GlobalOptions } from './context.js';

/** The name and agent the CLI's own peer registers with. */
const OPERATOR_NAME = 'operator';

/** The most the broker hands back in one inbox listing, and in one page of events. */
const PAGE = 1000;
const EVENT_PAGE = 500;
/** One inbox command shows at most this many messages. */
const MAX_INBOX_SHOWN = 10_000;

interface JsonFlag {
  json?: boolean;
}

interface ProjectFlag {
  project?: string;
}

/** What a mesh command works with: the broker's client and where the CLI runs. */
interface MeshSession {
  home: string;
  client: MeshClient;
  cwd: string;
  gitRoot: string | null;
  /**
   * The CLI's own peer (`operator`), registered on first use and remembered in
   * `mesh-cli.peer`. With `here`, it must sit in the current directory (scoped commands).
   */
  self(options?: { here?: boolean }): Promise<PeerView>;
}

function openMesh(options: GlobalOptions): MeshSession {
  const flags: FlagValues = options.home ? { home: options.home } : {};
  const config = loadConfig({ flags, env: process.env });
  prepareHome(config.home);
  const home = config.home;
  // No startBroker: the CLI never starts a broker; MeshUnavailableError says how to.
  const client = createMeshClient({ home, retryForMs: 1500 });
  const cwd = process.cwd();
  const gitRoot = findGitRoot(cwd);
  const peerFile = homeFile(home, 'mesh-cli.peer');

  async function register(): Promise<PeerView> {
    const { peer } = await client.register({
      cwd,
      git_root: gitRoot,
      agent: OPERATOR_AGENT,
      name: OPERATOR_NAME,
    });
    writePrivateFile(peerFile, `${peer.id}\n`);
    return peer;
  }

  async function self(options: { here?: boolean } = {}): Promise<PeerView> {
    const stored = readStoredPeerId(peerFile);
    if (stored === undefined) return register();
    let peer: PeerView;
    try {
      // Revives the peer if the broker had marked it gone; it is never unregistered at exit,
      // so agents can still reply to the operator.
      ({ peer } = await client.heartbeat(stored));
    } catch (error) {
      if (isPeerGone(error)) return register();
      throw error;
    }
    if (!options.here || (peer.cwd === cwd && peer.git_root === gitRoot)) return peer;
    // Scope is relative to where the peer sits: move the operator here.
    const { peer: moved } = await client.update(peer.id, { cwd, git_root: gitRoot });
    return moved;
  }

  return { home, client, cwd, gitRoot, self };
}

/** The broker no longer knows the peer (pruned, or unregistered): register again. */
function isPeerGone(error: unknown): boolean {
  return (
    error instanceof MeshRequestError &&
    error.status === 404 &&
    (error.code === 'peer_not_found' || error.code === 'peer_left')
  );
}

function readStoredPeerId(path: string): string | undefined {
  try {
    const id = readFileSync(path, 'utf8').trim();
    return PEER_ID.test(id) ? id.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `body` with a mesh session for the command's global options. */
async function withMesh<T>(command: Command, body: (mesh: MeshSession) => Promise<T>): Promise<T> {
  return body(openMesh(command.optsWithGlobals<GlobalOptions>()));
}

// Peers write these strings and the operator's terminal shows them: C0/C1 controls (escape
// sequences) and bidi overrides are shown escaped, never interpreted.
/* eslint-disable no-control-regex -- matching control characters is the point */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/** As UNSAFE, but keeping line breaks and tabs. */
const UNSAFE_KEEP_LINES =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
/* eslint-enable no-control-regex */

function escapeChar(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** Peer-written text made safe for one table cell or line, cut to `max` characters. */
function plain(text: string, max = Infinity): string {
  const safe = text.replace(UNSAFE, escapeChar);
  const chars = [...safe];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : safe;
}

const shortId = (id: string) => id.slice(0, 8);

function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** An argument as given, or standard input for `-` (without its final line breaks). */
async function argumentOrStdin(value: string): Promise<string> {
  return value === '-' ? (await readStdin()).replace(/[\r\n]+$/, '') : value;
}

/** Message text: as `argumentOrStdin`, and never empty. */
async function textArgument(what: string, value: string): Promise<string> {
  const text = await argumentOrStdin(value);
  if (text === '') {
    throw new CliError(
      value === '-' ? `${what} read from standard input is empty` : `${what} is empty`,
      2,
    );
  }
  return text;
}

function scopeOption(what: string): Option {
  return new Option(
    '--scope <scope>',
    `${what}: machine (every peer), directory (same working directory as here), repo (same git repository)`,
  ).choices(['machine', 'directory', 'repo']);
}

function describePeer(peer: PeerView): string {
  const where = peer.git_root ?? peer.cwd;
  return `${plain(peer.name)} (${peer.id}, ${peer.presence}, ${plain(where)})`;
}

/**
 * Finds the peer `PEER` names: a peer id, an exact name, or an id prefix of 4 characters or
 * more. Of several peers with one name, the only one online wins.
 */
export function resolvePeer(peers: PeerView[], wanted: string): PeerView {
  const match = matchPeer(peers, wanted);
  if (match.peer) return match.peer;
  const { candidates, byName } = match;
  if (candidates.length > 1) {
    throw new CliError(
      `"${plain(wanted)}" matches ${candidates.length} peers: ${candidates.map(describePeer).join('; ')}; ${byName ? 'use one of the ids' : 'give more of the id'}`,
    );
  }
  const lower = wanted.toLowerCase();
  const hint =
    lower.length < 4 && /^[0-9a-f-]+$/.test(lower)
      ? ' (an id prefix needs 4 characters or more)'
      : '';
  throw new CliError(
    `no peer with id or name "${plain(wanted)}"${hint}; \`palisade mesh peers\` lists them`,
  );
}

function peerRows(peers: PeerView[]) {
  return peers.map((p) => ({
    id: shortId(p.id),
    name: plain(p.name),
    agent: plain(p.agent),
    presence: p.presence,
    status: p.status,
    cwd: plain(p.cwd),
    git_root: p.git_root === null ? null : plain(p.git_root),
    last_seen: ago(p.last_seen_at),
    summary: p.summary === '' ? null : plain(p.summary, 60),
  }));
}

function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const parts = [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s}s`];
  return parts.filter(Boolean).join(' ');
}

function formatLimit(key: string, value: number): string {
  return key.endsWith('_ms') ? `${key.slice(0, -3)}=${formatDuration(value)}` : `${key}=${value}`;
}

const str = (value: unknown, fallback = '?') =>
  typeof value === 'string' ? plain(value) : typeof value === 'number' ? String(value) : fallback;

/** One readable line for an event: what happened, in words. */
export function describeEvent(event: EventView): string {
  const d = event.data;
  const who = str(d.name ?? d.by ?? d.from_name, event.peer_id ? shortId(event.peer_id) : '?');
  switch (event.type) {
    case 'peer.joined':
      return d.returned
        ? `${who} (${str(d.agent)}) is back`
        : `${who} (${str(d.agent)}) joined in ${str(d.git_root ?? d.cwd)}`;
    case 'peer.left':
      return d.reason === 'timeout' ? `${who} went away (no heartbeat)` : `${who} left`;
    case 'peer.summary':
      return `${who} is working on: ${str(d.summary, '')}`;
    case 'peer.status':
      return `${who} is now ${str(d.status)}`;
    case 'peer.moved':
      return `${who} moved to ${str(d.git_root ?? d.cwd)}`;
    case 'message.sent': {
      const size = typeof d.bytes === 'number' ? ` (${d.bytes} bytes)` : '';
      if (d.to === null || d.to === undefined) {
        const count = typeof d.recipients === 'number' ? `${d.recipients} peers` : 'peers';
        return `${who} -> ${count} (${str(d.scope, 'machine')}): broadcast #${str(d.message_id)}${size}`;
      }
      return `${who} -> ${str(d.to_name ?? d.to)}: message #${str(d.message_id)}${size}`;
    }
    case 'state.changed':
      return d.deleted
        ? `${who} deleted "${str(d.key)}" in ${str(d.project)}`
        : `${who} set "${str(d.key)}" in ${str(d.project)}${typeof d.bytes === 'number' ? ` (${d.bytes} bytes)` : ''}`;
    case 'file.claimed':
      return `${who} ${d.renewed ? 'renewed its claim on' : 'claimed'} ${str(d.path)} until ${str(d.expires_at)}`;
    case 'file.released':
      return d.reason === 'released'
        ? `${who} released ${str(d.path)}`
        : `${str(d.path)} released (${str(d.reason)}, held by ${who})`;
    default:
      return plain(JSON.stringify(d), 200);
  }
}

function eventLine(event: EventView): string {
  return `${event.at}  ${`#${event.seq}`.padEnd(6)}  ${event.type.padEnd(14)}  ${describeEvent(event)}\n`;
}

function parseSince(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw new CliError(
      `--since takes an event number (0 or more, as events and status show), got "${value}"`,
      2,
    );
  }
  return Number(value);
}

/** Prints every event after `since`, page by page; returns the last one's number. */
async function catchUp(
  client: MeshClient,
  since: number,
  print: (event: EventView) => void,
): Promise<number> {
  let cursor = since;
  for (;;) {
    const { events } = await client.events({ since: cursor, limit: EVENT_PAGE });
    for (const event of events) {
      if (event.seq <= cursor) continue;
      print(event);
      cursor = event.seq;
    }
    if (events.length < EVENT_PAGE) return cursor;
  }
}

/** Errors that waiting will not fix: a follow stops on these instead of reconnecting. */
function isFatal(error: unknown): boolean {
  if (!(error instanceof MeshRequestError)) return false;
  return error.status !== 401 && error.status !== 429 && error.status < 500;
}

/**
 * Prints events after `since` and keeps printing new ones from the SSE stream, reconnecting
 * (with Last-Event-ID) whenever the broker goes away, until SIGINT or SIGTERM.
 */
async function followEvents(
  mesh: MeshSession,
  since: number,
  print: (event: EventView) => void,
): Promise<void> {
  const controller = new AbortController();
  let stopped = false;
  const stop = () => {
    stopped = true;
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const untilStopped = new Promise<void>((resolve) => {
    controller.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let cursor = since;
  let retryMs = 1000;
  let lost = false;
  const show = (event: EventView) => {
    if (event.seq <= cursor) return;
    cursor = event.seq;
    print(event);
  };
  const noteLost = (why: string) => {
    if (lost) return;
    lost = true;
    process.stderr.write(`palisade: ${why}; reconnecting (Ctrl-C stops)\n`);
  };
  try {
    // A broker that is not there at the start is an error; later, one that goes is waited for.
    await Promise.race([catchUp(mesh.client, cursor, show), untilStopped]);
    while (!stopped) {
      try {
        await streamEventsOnce(
          mesh.home,
          cursor,
          controller.signal,
          () => {
            if (lost) process.stderr.write('palisade: reconnected\n');
            lost = false;
          },
          show,
          (ms) => (retryMs = Math.min(Math.max(ms, 250), 30_000)),
        );
        if (!stopped) noteLost('the broker closed the event stream');
      } catch (error) {
        if (stopped) break;
        if (isFatal(error)) throw error;
        noteLost(
          error instanceof MeshUnavailableError ? 'the broker went away' : 'lost the event stream',
        );
      }
      await sleep(retryMs, undefined, { signal: controller.signal }).catch(() => {});
      if (stopped) break;
      try {
        // Events missed while away (the stream itself replays a bounded number).
        await Promise.race([catchUp(mesh.client, cursor, show), untilStopped]);
      } catch (error) {
        if (isFatal(error)) throw error;
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

function projectOf(mesh: MeshSession, flags: ProjectFlag): string {
  return flags.project ?? mesh.gitRoot ?? mesh.cwd;
}

function noSuchKey(key: string, project: string): CliError {
  return new CliError(
    `no key "${plain(key)}" in project ${plain(project)} (\`palisade mesh state list --project ${plain(project)}\` shows them)`,
  );
}

/**
 * Adds `palisade mesh ...`: the operator's view of the agent mesh run by `palisade serve`.
 *
 * @example
 * registerMeshCommands(program); // palisade mesh send reviewer 'the parser is yours'
 */
export function registerMeshCommands(program: Command): void {
  const mesh = program
    .command('mesh')
    .description('the agent mesh broker run by palisade serve: peers, messages, state, claims')
    .addHelpText(
      'after',
      `
The CLI joins the mesh as the peer "${OPERATOR_NAME}" (agent ${OPERATOR_AGENT}) when it sends
messages, reads its inbox or writes state, and stays registered so agents can reply to it.
It never starts a broker: run \`palisade serve\` first.`,
    );

  mesh
    .command('status')
    .description('broker status: uptime, peers, messages, events, claims and limits')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<JsonFlag & GlobalOptions>();
      await withMesh(command, async ({ client, home }) => {
        const status = await client.status();
        if (flags.json) return printJson(status);
        const rows: Array<[string, string]> = [
          ['broker', `${status.status}, ${readMeshEndpoint(home).url ?? '?'}`],
          ['version', status.version],
          ['uptime', formatUptime(status.uptime_s)],
          ['peers', `${status.peers_online} online, ${status.peers_gone} gone`],
          ['messages', `${status.messages} (${status.unread} unread)`],
          ['events', `${status.events} (last #${status.last_event_seq})`],
          ['claims', String(status.claims)],
          [
            'limits',
            Object.entries(status.limits)
              .map(([k, v]) => formatLimit(k, v))
              .join(', '),
          ],
        ];
        const width = Math.max(...rows.map(([k]) => k.length));
        process.stdout.write(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n');
      });
    });

  mesh
    .command('peers')
    .description('list peers (online and gone; --all adds those that left)')
    .addOption(scopeOption('which peers'))
    .option('--all', 'include peers that unregistered')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        { scope?: Scope; all?: boolean } & JsonFlag & GlobalOptions
      >();
      await withMesh(command, async (session) => {
        const scope = flags.scope ?? 'machine';
        const viewer = scope === 'machine' ? undefined : await session.self({ here: true });
        const { peers } = await session.client.peers({
          scope,
          ...(viewer ? { peer_id: viewer.id } : {}),
          ...(flags.all ? { include_left: true } : {}),
        });
        if (flags.json) return printJson(peers);
        printRows(peerRows(peers), false);
      });
    });

  mesh
    .command('send <peer> <text>')
    .description(
      'send TEXT (- reads standard input) to PEER: an id, an exact name, or an id prefix',
    )
    .action(async (peer: string, text: string, _flags: unknown, command: Command) => {
      const body = await textArgument('TEXT', text);
      await withMesh(command, async (session) => {
        const { peers } = await session.client.peers();
        const target = resolvePeer(peers, peer);
        const me = await session.self();
        const { message } = await session.client.send(me.id, target.id, body);
        process.stdout.write(
          `sent message #${message.id} to ${plain(target.name)} (${shortId(target.id)})\n`,
        );
      });
    });

  mesh
    .command('broadcast <text>')
    .description('send TEXT (- reads standard input) to every peer in scope but the operator')
    .addOption(scopeOption('who receives it (default machine)'))
    .action(async (text: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<{ scope?: Scope } & GlobalOptions>();
      const body = await textArgument('TEXT', text);
      await withMesh(command, async (session) => {
        const scope = flags.scope ?? 'machine';
        const me = await session.self({ here: scope !== 'machine' });
        const { message, recipients } = await session.client.broadcast(me.id, body, scope);
        process.stdout.write(
          `broadcast message #${message.id} to ${recipients} peer${recipients === 1 ? '' : 's'} (${scope})\n`,
        );
      });
    });

  mesh
    .command('inbox')
    .description('messages to the operator; marks the unread ones shown as read')
    .option('--all', 'also show messages already read')
    .option('--keep-unread', 'leave the messages shown unread')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        { all?: boolean; keepUnread?: boolean } & JsonFlag & GlobalOptions
      >();
      await withMesh(command, async (session) => {
        const me = await session.self();
        // Page by page: an inbox may hold more than the broker hands back at once.
        const messages: MessageView[] = [];
        for (let after = 0; messages.length < MAX_INBOX_SHOWN;) {
          const page = await session.client.inbox(me.id, {
            unread: !flags.all,
            limit: PAGE,
            after,
          });
          messages.push(...page.messages);
          if (page.messages.length < PAGE) break;
          after = page.messages.at(-1)?.id ?? after;
        }
        if (flags.json) printJson(messages);
        else {
          printRows(
            messages.map((m) => ({
              id: m.id,
              from: `${plain(m.from.name)} (${shortId(m.from.id)})`,
              sent_at: m.sent_at,
              ...(flags.all ? { read: m.read_at ? 'yes' : 'no' } : {}),
              text: m.to === null ? `[broadcast] ${plain(m.text)}` : plain(m.text),
            })),
            false,
          );
        }
        if (messages.length >= MAX_INBOX_SHOWN) {
          process.stderr.write(
            `palisade: showing the first ${messages.length} messages; run again for the rest\n`,
          );
        }
        const unread = messages.filter((m) => !m.read_at).map((m) => m.id);
        if (!flags.keepUnread && unread.length > 0) await session.client.markRead(me.id, unread);
      });
    });

  mesh
    .command('events')
    .description('every event the broker recorded (the operator sees all; no message text)')
    .option('--since <n>', 'only events after event number N (default 0: all kept)')
    .option('-f, --follow', 'keep printing new events as they happen, until Ctrl-C')
    .option('--json', 'print JSON (with --follow: one event per line)')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<
        { since?: string; follow?: boolean } & JsonFlag & GlobalOptions
      >();
      const since = parseSince(flags.since);
      await withMesh(command, async (session) => {
        if (flags.follow) {
          const print = flags.json
            ? (event: EventView) => void process.stdout.write(JSON.stringify(event) + '\n')
            : (event: EventView) => void process.stdout.write(eventLine(event));
          return followEvents(session, since, print);
        }
        if (flags.json) {
          const events: EventView[] = [];
          await catchUp(session.client, since, (event) => events.push(event));
          return printJson(events);
        }
        let count = 0;
        await catchUp(session.client, since, (event) => {
          count += 1;
          process.stdout.write(eventLine(event));
        });
        if (count === 0) process.stdout.write('(none)\n');
      });
    });

  const state = mesh
    .command('state')
    .description(
      'shared key/value state per project (default: the git root here, else this directory)',
    );
  const projectHelp = 'project (default: git root of the current directory, else the directory)';

  state
    .command('get <key>')
    .description('print the value of KEY')
    .option('--project <project>', projectHelp)
    .option('--json', 'print the entry as JSON')
    .action(async (key: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<ProjectFlag & JsonFlag & GlobalOptions>();
      await withMesh(command, async (session) => {
        const project = projectOf(session, flags);
        let entry;
        try {
          ({ entry } = await session.client.stateGet(project, key));
        } catch (error) {
          if (error instanceof MeshRequestError && error.code === 'state_not_found') {
            throw noSuchKey(key, project);
          }
          throw error;
        }
        if (flags.json) return printJson(entry);
        // Raw for pipes; on a terminal, escape sequences are shown, not run.
        const value = process.stdout.isTTY
          ? entry.value.replace(UNSAFE_KEEP_LINES, escapeChar)
          : entry.value;
        process.stdout.write(value.endsWith('\n') || value === '' ? value : `${value}\n`);
      });
    });

  state
    .command('set <key> <value>')
    .description('set KEY to VALUE (- reads standard input) as the operator')
    .option('--project <project>', projectHelp)
    .action(async (key: string, value: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<ProjectFlag & GlobalOptions>();
      const body = await argumentOrStdin(value);
      await withMesh(command, async (session) => {
        const project = projectOf(session, flags);
        const me = await session.self();
        await session.client.stateSet(me.id, project, key, body);
        process.stdout.write(`set "${plain(key)}" in ${plain(project)}\n`);
      });
    });

  state
    .command('list')
    .description('list the keys of a project')
    .option('--project <project>', projectHelp)
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<ProjectFlag & JsonFlag & GlobalOptions>();
      await withMesh(command, async (session) => {
        const project = projectOf(session, flags);
        const { entries } = await session.client.stateList(project);
        if (flags.json) return printJson(entries);
        if (entries.length === 0) {
          process.stdout.write(`(none in ${plain(project)})\n`);
          return;
        }
        printRows(
          entries.map((e) => ({
            key: plain(e.key),
            value: plain(e.value, 60),
            set_by: `${plain(e.set_by.name)} (${shortId(e.set_by.id)})`,
            updated_at: e.updated_at,
          })),
          false,
        );
      });
    });

  state
    .command('delete <key>')
    .description('delete KEY as the operator')
    .option('--project <project>', projectHelp)
    .action(async (key: string, _flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<ProjectFlag & GlobalOptions>();
      await withMesh(command, async (session) => {
        const project = projectOf(session, flags);
        const me = await session.self();
        const { deleted } = await session.client.stateDelete(me.id, project, key);
        if (!deleted) throw noSuchKey(key, project);
        process.stdout.write(`deleted "${plain(key)}" from ${plain(project)}\n`);
      });
    });

  mesh
    .command('locks')
    .description('live file claims: which peer holds which file, until when')
    .option('--json', 'print JSON')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<JsonFlag & GlobalOptions>();
      await withMesh(command, async ({ client }) => {
        const { claims } = await client.claims();
        if (flags.json) return printJson(claims);
        printRows(
          claims.map((c) => ({
            path: plain(c.path),
            holder: plain(c.peer_name),
            peer: shortId(c.peer_id),
            claimed_at: c.claimed_at,
            expires_at: c.expires_at,
          })),
          false,
        );
      });
    });
}
