/**
 * `palisade models pull`: downloads a GGUF model into `PALISADE_HOME/models`, resumably and
 * atomically. Bytes go to `NAME.gguf.part` (with `NAME.gguf.part.json` recording where they
 * came from); only a complete, checksum-verified file with a valid GGUF header is renamed to
 * `NAME.gguf`. The same code runs as a job started from the dashboard, so every connection
 * goes through the gateway's SSRF guard.
 *
 * The transfer uses node:http(s), not undici: undici 7's HTTP/1 parser, paused by backpressure
 * when the server closes the connection, throws an uncatchable AssertionError
 * (nodejs/undici#5360, fixed in 8.6.0, which needs Node 22). Node's parser pauses the socket
 * instead, which a closing server cannot upset.
 */
import { createHash, type Hash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { lstat, open, rename, rm, statfs, type FileHandle } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import { writePrivateFile } from '../config/index.js';
import { checkUpstreamUrl, guardedLookup, SsrfError, type SsrfPolicy } from '../gateway/index.js';
import { readGgufHeader, type GgufInfo } from './gguf.js';
import {
  assertStaysInside,
  ensureModelsDir,
  GGUF_EXTENSION,
  LOCK_SUFFIX,
  lockOwner,
  modelFileName,
  modelName,
  ModelNameError,
  PART_SUFFIX,
  readSidecar,
  SIDECAR_SUFFIX,
  type PartSidecar,
} from './models-dir.js';
import { formatBytes } from './progress.js';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
export const MAX_REDIRECTS = 5;
/** The default `maxBytes` (`--max-size 256gb`): larger than any model file published today. */
export const DEFAULT_MAX_BYTES = 256 * 1024 ** 3;
/** Space left free on the models folder's disk: 1 GB, or 5% of the disk if that is less. */
const SPARE_BYTES = 1_000_000_000;
const SPARE_SHARE = 0.05;

/** A pull that failed; `exitCode` 2 for usage mistakes (bad source or name), 1 otherwise. */
export class PullError extends Error {
  override readonly name = 'PullError';
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** Where a pull downloads from. */
export interface PullSource {
  url: URL;
  /** The source as it may be shown: no query string, no credentials. */
  display: string;
  /** The file name the URL names (last path segment, decoded). */
  fileName: string;
  hf?: { repo: string; path: string; revision: string };
}

const HF_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._/-]*$/;

/** The Hugging Face endpoint: PALISADE_HF_ENDPOINT, else HF_ENDPOINT, else huggingface.co. */
export function hfEndpoint(env: NodeJS.ProcessEnv = process.env): URL {
  const text = env.PALISADE_HF_ENDPOINT || env.HF_ENDPOINT || DEFAULT_HF_ENDPOINT;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new PullError(`PALISADE_HF_ENDPOINT (or HF_ENDPOINT) is not a URL: ${text}`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PullError('PALISADE_HF_ENDPOINT (or HF_ENDPOINT) must be an http(s) URL', 2);
  }
  return url;
}

/**
 * Parses `https://...`, `http://...` or `hf:owner/repo/path/file.gguf[@revision]`.
 *
 * @example
 * parseSource('hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf').url.href;
 * // 'https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf'
 */
export function parseSource(spec: string, env: NodeJS.ProcessEnv = process.env): PullSource {
  if (spec.startsWith('hf:')) return parseHfSource(spec.slice(3), env);
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    throw new PullError(
      'the source is neither a URL nor hf:owner/repo/file.gguf (e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf)',
      2,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new PullError(`scheme ${url.protocol} is not supported: use http(s):// or hf:`, 2);
  }
  if (url.username !== '' || url.password !== '') {
    throw new PullError(
      'credentials in the URL are not allowed (use HF_TOKEN for Hugging Face)',
      2,
    );
  }
  url.hash = '';
  return { url, display: displayUrl(url), fileName: lastSegment(url) };
}

function parseHfSource(rest: string, env: NodeJS.ProcessEnv): PullSource {
  const usage = 'expected hf:owner/repo/path/file.gguf or hf:owner/repo/file.gguf@revision';
  let revision = 'main';
  const at = rest.lastIndexOf('@');
  if (at !== -1) {
    revision = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!REVISION.test(revision) || revision.includes('..')) {
      throw new PullError(`the revision "${revision.slice(0, 80)}" is not valid; ${usage}`, 2);
    }
  }
  const [owner = '', repo = '', ...path] = rest.split('/');
  if (!HF_PART.test(owner) || !HF_PART.test(repo) || path.length === 0) {
    throw new PullError(`"hf:${rest.slice(0, 120)}" is not a Hugging Face file; ${usage}`, 2);
  }
  for (const segment of path) {
    if (segment === '' || segment === '.' || segment === '..' || segment.includes('\0')) {
      throw new PullError(`the path in "hf:${rest.slice(0, 120)}" is not valid; ${usage}`, 2);
    }
  }
  const base = hfEndpoint(env);
  const prefix = base.pathname.replace(/\/+$/, '');
  const url = new URL(base.origin);
  url.pathname = [
    prefix,
    owner,
    repo,
    'resolve',
    encodeURIComponent(revision),
    ...path.map(encodeURIComponent),
  ].join('/');
  return {
    url,
    display: `hf:${owner}/${repo}/${path.join('/')}${revision === 'main' ? '' : `@${revision}`}`,
    fileName: path[path.length - 1] as string,
    hf: { repo: `${owner}/${repo}`, path: path.join('/'), revision },
  };
}

function displayUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function lastSegment(url: URL): string {
  const raw = url.pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** What a pull reports as it goes; `bytes` counts what is on disk, resumed bytes included. */
export interface PullProgress {
  bytes: number;
  total?: number;
  /** Bytes already on disk when this download started (resume). */
  resumedFrom: number;
  done: boolean;
}

export interface PullOptions {
  /** PALISADE_HOME; the models folder is its `models/`. */
  home: string;
  /** A URL or `hf:owner/repo/file.gguf[@revision]`. */
  source: string;
  /** The model name (file name without .gguf); by default the URL's file name. */
  name?: string;
  /** Expected SHA-256 of the whole file, 64 hex digits. */
  sha256?: string;
  /** Replace an existing model of the same name. */
  force?: boolean;
  /** Environment for HF_TOKEN and PALISADE_HF_ENDPOINT (default process.env). */
  env?: NodeJS.ProcessEnv;
  onProgress?: (progress: PullProgress) => void;
  /** One-line notes worth showing (resuming, restarting, checksum source). */
  onNotice?: (text: string) => void;
  signal?: AbortSignal;
  /** DNS lookup under the SSRF guard (tests); default dns.lookup. */
  lookup?: LookupFunction;
  ssrf?: SsrfPolicy;
  /** Time allowed for the connection, the response headers, and each pause in the body. */
  timeoutMs?: number;
  /** The largest file accepted (whole file, resumed bytes included); default 256 GiB. */
  maxBytes?: number;
}

export interface PullResult {
  name: string;
  path: string;
  size: number;
  sha256: string;
  /** Where the expected checksum came from, if one was checked. */
  verified?: 'flag' | 'etag';
  resumedFrom: number;
  info: GgufInfo;
}

const SHA256 = /^[0-9a-f]{64}$/;

function normalizeSha(value: string): string {
  const hex = value.trim().toLowerCase();
  if (!SHA256.test(hex)) {
    throw new PullError('--sha256 must be 64 hexadecimal digits (the output of sha256sum)', 2);
  }
  return hex;
}

/** The SHA-256 an ETag or X-Linked-Etag carries (Hugging Face's LFS files), if it is one. */
export function shaFromEtag(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const hex = value.trim().replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
  return SHA256.test(hex) ? hex : undefined;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** A header value shown in an error: printable ASCII only, and short. */
function shown(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/**
 * Downloads a model. Resumes `NAME.gguf.part` when its sidecar names the same URL and the
 * server still has the same file (If-Range); verifies SHA-256 when known; refuses a file that
 * is not valid GGUF; and renames into place only at the end.
 *
 * @example
 * const result = await pullModel({ home, source: 'hf:owner/repo/model.gguf', onProgress });
 * console.log(result.path, result.sha256);
 */
export async function pullModel(options: PullOptions): Promise<PullResult> {
  const env = options.env ?? process.env;
  const source = parseSource(options.source, env);
  // Every URL asked for; the query string of a signed one is a credential no message may show.
  const visited = [source.url];
  try {
    return await pull(options, source, env, visited);
  } catch (error) {
    throw scrubbed(error, visited);
  }
}

async function pull(
  options: PullOptions,
  source: PullSource,
  env: NodeJS.ProcessEnv,
  visited: URL[],
): Promise<PullResult> {
  const expectedFlag = options.sha256 !== undefined ? normalizeSha(options.sha256) : undefined;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new PullError('the size limit (--max-size) must be a positive number of bytes', 2);
  }
  const name = targetName(source, options.name);
  let dir: string;
  try {
    dir = ensureModelsDir(options.home);
  } catch (error) {
    throw diskError(error, 'cannot create the models folder');
  }
  const file = modelFileName(name);
  const target = join(dir, file);
  const partPath = target + PART_SUFFIX;
  const sidecarPath = target + SIDECAR_SUFFIX;
  await assertTargetFree(dir, target, name, options.force === true);
  try {
    checkDownloadUrl(source.url, options.ssrf);
  } catch (error) {
    throw new PullError((error as Error).message, 2, { cause: error });
  }

  const token = env.HF_TOKEN?.trim() || undefined;
  const tokenOrigin = token !== undefined ? hfEndpoint(env).origin : undefined;
  const unlock = await lockPart(target + LOCK_SUFFIX, name);
  const transport: Transport = {
    lookup: guardedLookup(options.lookup, options.ssrf),
    timeoutMs: options.timeoutMs ?? 60_000,
    signal: options.signal,
  };
  try {
    let resume: Resume | undefined;
    try {
      resume = await resumableState(partPath, sidecarPath, source.url.href);
      if (resume === undefined) await discardPart(partPath, sidecarPath);
    } catch (error) {
      throw diskError(error, `cannot reuse or remove the partial download ${file}${PART_SUFFIX}`);
    }
    let attempt = await fetchFinal(source, {
      visited,
      transport,
      token,
      tokenOrigin,
      signal: options.signal,
      ssrf: options.ssrf,
      range: resume,
    });
    if (resume !== undefined && attempt.response.statusCode === 416) {
      // The part is no prefix the server recognises (already complete, or the file shrank).
      attempt.response.destroy();
      options.onNotice?.('the server refused to resume; starting again from the beginning');
      await discardPart(partPath, sidecarPath);
      resume = undefined;
      attempt = await fetchFinal(source, {
        visited,
        transport,
        token,
        tokenOrigin,
        signal: options.signal,
        ssrf: options.ssrf,
      });
    }
    const { response, url, etagSha } = attempt;
    const status = response.statusCode ?? 0;
    if (status !== 200 && status !== 206) {
      response.destroy();
      throw statusError(status, response.headers, source, token !== undefined);
    }
    let offset = 0;
    let total = numberHeader(header(response.headers, 'content-length'));
    if (status === 206) {
      const range = parseContentRange(header(response.headers, 'content-range'));
      if (resume === undefined || range === undefined || range.start !== resume.size) {
        response.destroy();
        await discardPart(partPath, sidecarPath);
        throw new PullError(
          `${url.host} answered a range that was not asked for; run the same command again`,
        );
      }
      offset = resume.size;
      total = range.total;
    } else if (resume !== undefined) {
      options.onNotice?.(
        'the server sent the whole file (it changed, or does not support resuming); starting again',
      );
    }
    if (total !== undefined && total > maxBytes) {
      response.destroy();
      await discardPart(partPath, sidecarPath);
      throw new PullError(
        `${source.display} is ${formatBytes(total)}, over the size limit of ${formatBytes(maxBytes)}; ` +
          'nothing was kept. Pass --max-size SIZE (for example --max-size 512gb) to allow it',
      );
    }
    if (total !== undefined) {
      try {
        await assertFreeSpace(dir, total - offset, offset > 0);
      } catch (error) {
        response.destroy();
        throw error;
      }
    }
    if (offset > 0) {
      options.onNotice?.(
        `resuming at ${formatBytes(offset)}${total !== undefined ? ` of ${formatBytes(total)}` : ''}`,
      );
    }

    const expected = expectedFlag ?? (source.hf ? etagSha : undefined);
    const sidecar: PartSidecar = {
      url: source.url.href,
      ...validators(response.headers),
      ...(total !== undefined ? { total } : {}),
    };
    // A resumed file is hashed whole: the part's bytes were hashed before the request.
    const hash = offset > 0 && resume !== undefined ? resume.sha : createHash('sha256');
    const received = await download({
      response,
      partPath,
      sidecarPath,
      sidecar,
      offset,
      hash,
      total,
      maxBytes,
      display: source.display,
      host: url.host,
      signal: options.signal,
      onProgress: options.onProgress,
    });
    const sha256 = hash.digest('hex');
    if (expected !== undefined && sha256 !== expected) {
      await discardPart(partPath, sidecarPath);
      throw new PullError(
        `SHA-256 mismatch for ${source.display}: expected ${expected}, got ${sha256}; ` +
          'the download was deleted. Check the --sha256 value, or the source changed',
      );
    }
    let info: GgufInfo;
    try {
      info = await readGgufHeader(partPath);
    } catch (error) {
      await discardPart(partPath, sidecarPath);
      throw new PullError(
        `${source.display} is not a valid GGUF model (${(error as Error).message}); ` +
          'nothing was saved. Check that the URL names a .gguf file',
        1,
        { cause: error },
      );
    }
    await assertTargetFree(dir, target, name, options.force === true);
    try {
      await rename(partPath, target);
      await rm(sidecarPath, { force: true });
    } catch (error) {
      throw diskError(error, `cannot move the download into place as ${file}`);
    }
    return {
      name,
      path: target,
      size: received,
      sha256,
      ...(expected !== undefined ? { verified: expectedFlag !== undefined ? 'flag' : 'etag' } : {}),
      resumedFrom: offset,
      info,
    };
  } finally {
    await unlock();
  }
}

/**
 * Refuses a download that would leave less than the spare space free: `needed` more bytes must
 * fit with 1 GB (or 5% of the disk, if less) to spare. A disk whose size cannot be read is not
 * checked (a write that runs out of space still fails with ENOSPC).
 */
async function assertFreeSpace(dir: string, needed: number, resuming: boolean): Promise<void> {
  const disk = await statfs(dir).catch(() => undefined);
  if (disk === undefined || disk.bsize <= 0) return;
  const free = disk.bavail * disk.bsize;
  const spare = Math.min(SPARE_BYTES, Math.floor(disk.blocks * disk.bsize * SPARE_SHARE));
  if (needed + spare <= free) return;
  throw new PullError(
    `not enough free space in the models folder: ${formatBytes(needed)} still to download, ` +
      `${formatBytes(free)} free (${formatBytes(spare)} is kept spare); free some space and run ` +
      `the same command again${resuming ? ' to resume' : ''}`,
  );
}

/** `error` with every appearance of the URLs' query strings cut out of its message. */
function scrubbed(error: unknown, urls: URL[]): unknown {
  if (!(error instanceof Error)) return error;
  const message = redact(error.message, urls);
  if (message !== error.message) error.message = message;
  return error;
}

function redact(text: string, urls: URL[]): string {
  for (const url of urls) {
    if (url.search === '') continue;
    text = text.split(url.href).join(displayUrl(url));
    for (const form of [url.search, url.search.slice(1), safeDecode(url.search.slice(1))]) {
      if (form !== '') text = text.split(form).join('');
    }
  }
  return text;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Two pulls of one name (say, two jobs) would write the same part: the second is refused while
 * the first runs. The lock holds the owner's pid, so one left by a killed process is taken over.
 */
async function lockPart(lockPath: string, name: string): Promise<() => Promise<void>> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writePrivateFile(lockPath, `${process.pid}\n`, true);
      return () => rm(lockPath, { force: true }).catch(() => undefined);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw diskError(error, 'cannot write the download');
      }
    }
    const owner = await lockOwner(lockPath);
    if (owner !== undefined) {
      throw new PullError(
        `another pull of "${name}" is running (pid ${owner}); wait for it, or stop it first`,
      );
    }
    await rm(lockPath, { force: true });
  }
  throw new PullError(`another pull of "${name}" keeps starting; try again`);
}

function targetName(source: PullSource, name: string | undefined): string {
  try {
    if (name !== undefined) return modelName(name);
    if (!source.fileName.toLowerCase().endsWith(GGUF_EXTENSION)) {
      throw new PullError(
        `the file name "${shown(source.fileName)}" does not end in .gguf; ` +
          'only GGUF models can be pulled (pass --name NAME if this URL does serve one)',
        2,
      );
    }
    return modelName(source.fileName.slice(0, -GGUF_EXTENSION.length) + GGUF_EXTENSION);
  } catch (error) {
    if (error instanceof ModelNameError) {
      const hint = name === undefined ? ' (the name comes from the URL; pass --name NAME)' : '';
      throw new PullError(error.message + hint, 2, { cause: error });
    }
    throw error;
  }
}

async function assertTargetFree(
  dir: string,
  target: string,
  name: string,
  force: boolean,
): Promise<void> {
  const existing = await lstat(target).catch(() => undefined);
  if (existing === undefined) return;
  if (!existing.isFile()) {
    throw new PullError(
      `${name}${GGUF_EXTENSION} in the models folder is not a regular file; remove it first`,
    );
  }
  if (!force) {
    throw new PullError(
      `model "${name}" already exists; pass --force to replace it, or --name NAME to keep both`,
    );
  }
  try {
    await assertStaysInside(dir, target);
  } catch (error) {
    throw new PullError((error as Error).message, 1, { cause: error });
  }
}

/** Checks a URL (the first or a redirect target) against the SSRF policy. */
function checkDownloadUrl(url: URL, policy: SsrfPolicy | undefined): void {
  // Only scheme, host and credentials matter here; a signed CDN redirect carries its grant
  // in the query string, which checkUpstreamUrl (meant for upstream base URLs) refuses.
  const bare = new URL(url.href);
  bare.search = '';
  bare.hash = '';
  try {
    checkUpstreamUrl(bare.href, policy);
  } catch (error) {
    if (error instanceof SsrfError) {
      throw new PullError(
        `download refused: ${error.message.replace(/^upstream URL refused: /, '')}`,
        1,
        { cause: error },
      );
    }
    throw error;
  }
}

interface Resume {
  size: number;
  validator: string;
  sha: Hash;
}

/** The part on disk, if it can be resumed: same URL, a validator for If-Range, some bytes. */
async function resumableState(
  partPath: string,
  sidecarPath: string,
  url: string,
): Promise<Resume | undefined> {
  const part = await lstat(partPath).catch(() => undefined);
  if (part === undefined || !part.isFile() || part.size === 0) return undefined;
  const sidecar = await readSidecar(sidecarPath);
  if (sidecar?.url !== url) return undefined;
  const validator = sidecar.etag ?? sidecar.lastModified;
  if (validator === undefined) return undefined;
  // Hash the bytes already there now, before the request: a long hash while a response waits
  // unread would trip its body timeout.
  const sha = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(partPath)) {
    sha.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return size === 0 ? undefined : { size, validator, sha };
}

async function discardPart(partPath: string, sidecarPath: string): Promise<void> {
  await rm(partPath, { force: true });
  await rm(sidecarPath, { force: true });
}

/** How every request connects: through the SSRF-guarded lookup, with one timeout. */
interface Transport {
  lookup: LookupFunction;
  timeoutMs: number;
  signal: AbortSignal | undefined;
}

/** An idle connection (no connect, no headers, or a pause in the body) for this long. */
class IdleTimeout extends Error {
  override readonly name = 'IdleTimeout';
  readonly code = 'ETIMEDOUT';
}

/**
 * One GET with node:http(s): resolves with the response once its headers are in. Every
 * connection is fresh (no keep-alive) and every DNS answer goes through the guarded lookup.
 */
function get(url: URL, headers: Record<string, string>, transport: Transport) {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise<IncomingMessage>((resolve, reject) => {
    let response: IncomingMessage | undefined;
    const req = send(
      url,
      {
        method: 'GET',
        headers,
        agent: false,
        lookup: transport.lookup,
        timeout: transport.timeoutMs,
        ...(transport.signal ? { signal: transport.signal } : {}),
      },
      (res) => {
        response = res;
        resolve(res);
      },
    );
    req.on('timeout', () => {
      const error = new IdleTimeout(`no data for ${transport.timeoutMs} ms`);
      if (response !== undefined) response.destroy(error);
      else req.destroy(error);
    });
    // Kept for the life of the request: an error after the headers goes to the body reader.
    req.on('error', reject);
    req.end();
  });
}

interface FetchOptions {
  /** Each redirect target is added, for the messages to be scrubbed of their query strings. */
  visited: URL[];
  transport: Transport;
  token: string | undefined;
  tokenOrigin: string | undefined;
  signal: AbortSignal | undefined;
  ssrf: SsrfPolicy | undefined;
  range?: Resume;
}

interface Fetched {
  response: IncomingMessage;
  url: URL;
  /** A SHA-256 seen in X-Linked-Etag / ETag on the way (Hugging Face names LFS files so). */
  etagSha: string | undefined;
}

/** GET with redirects followed by hand, so every hop is checked and credentials stay home. */
async function fetchFinal(source: PullSource, options: FetchOptions): Promise<Fetched> {
  let url = source.url;
  const origin = url.origin;
  let leftHome = false;
  let etagSha: string | undefined;
  for (let hop = 0; ; hop++) {
    checkDownloadUrl(url, options.ssrf);
    const headers: Record<string, string> = {
      'user-agent': 'palisade',
      accept: '*/*',
      'accept-encoding': 'identity',
    };
    if (url.origin !== origin) leftHome = true;
    if (options.token !== undefined && !leftHome && url.origin === options.tokenOrigin) {
      headers.authorization = `Bearer ${options.token}`;
    }
    if (options.range !== undefined) {
      headers.range = `bytes=${options.range.size}-`;
      headers['if-range'] = options.range.validator;
    }
    let response: IncomingMessage;
    try {
      response = await get(url, headers, options.transport);
    } catch (error) {
      throw networkError(error, url, source.url);
    }
    etagSha ??=
      shaFromEtag(header(response.headers, 'x-linked-etag')) ??
      shaFromEtag(header(response.headers, 'etag'));
    const status = response.statusCode ?? 0;
    if (![301, 302, 303, 307, 308].includes(status)) {
      return { response, url, etagSha };
    }
    response.destroy();
    const location = header(response.headers, 'location');
    if (location === undefined) {
      throw new PullError(`${url.host} answered a redirect (HTTP ${status}) without a Location`);
    }
    if (hop >= MAX_REDIRECTS) {
      throw new PullError(`too many redirects (more than ${MAX_REDIRECTS}) from ${source.display}`);
    }
    let next: URL;
    try {
      next = new URL(location, url);
    } catch {
      throw new PullError(`${url.host} redirected to an invalid URL`);
    }
    next.hash = '';
    options.visited.push(next);
    const downgrade = redirectDowngrade(source.url, url, next);
    if (downgrade !== undefined) throw new PullError(downgrade);
    url = next;
  }
}

/**
 * Why a redirect from `from` to `to` is refused as a downgrade: https to plain http, when the
 * source itself was https (a source given as http:// was never protected).
 *
 * @example
 * redirectDowngrade(new URL('https://a/m.gguf'), new URL('https://a/m.gguf'), new URL('http://b/x'));
 * // 'a redirected from https to plain http (b); ...'
 */
export function redirectDowngrade(source: URL, from: URL, to: URL): string | undefined {
  if (source.protocol !== 'https:' || from.protocol !== 'https:' || to.protocol !== 'http:') {
    return undefined;
  }
  return (
    `${from.host} redirected from https to plain http (${to.host}); the download was refused ` +
    'because the file could be altered on the way. Ask the server for an https link, or pass ' +
    'an http:// URL yourself if you trust that network'
  );
}

function validators(headers: IncomingHttpHeaders): {
  etag?: string;
  lastModified?: string;
} {
  const etag = header(headers, 'etag');
  const lastModified = header(headers, 'last-modified');
  return {
    // A weak ETag cannot be used with If-Range.
    ...(etag !== undefined && !etag.startsWith('W/') ? { etag } : {}),
    ...(lastModified !== undefined ? { lastModified } : {}),
  };
}

function numberHeader(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,16}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** `bytes START-END/TOTAL` (TOTAL may be `*`). */
function parseContentRange(
  value: string | undefined,
): { start: number; total?: number } | undefined {
  const match = value === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value.trim());
  if (match === null) return undefined;
  const start = Number(match[1]);
  const total = match[3] === '*' ? undefined : Number(match[3]);
  return { start, ...(total !== undefined ? { total } : {}) };
}

interface DownloadOptions {
  response: IncomingMessage;
  partPath: string;
  sidecarPath: string;
  sidecar: PartSidecar;
  offset: number;
  hash: Hash;
  total: number | undefined;
  maxBytes: number;
  display: string;
  host: string;
  signal: AbortSignal | undefined;
  onProgress: ((progress: PullProgress) => void) | undefined;
}

/** Streams the body into the part file; returns the size of the whole file. */
async function download(options: DownloadOptions): Promise<number> {
  const { response, partPath, offset, hash, total } = options;
  let handle: FileHandle;
  try {
    writePrivateFile(options.sidecarPath, JSON.stringify(options.sidecar) + '\n');
    const flags =
      constants.O_WRONLY |
      constants.O_CREAT |
      constants.O_NOFOLLOW |
      (offset > 0 ? constants.O_APPEND : constants.O_TRUNC);
    handle = await open(partPath, flags, 0o600);
    await handle.chmod(0o600);
  } catch (error) {
    response.destroy();
    throw diskError(error, 'cannot write the download');
  }
  let bytes = offset;
  let tooLarge = false;
  try {
    if (offset > 0) {
      const stats = await handle.stat();
      if (stats.size !== offset) {
        throw new PullError('the partial download changed while resuming; run the command again');
      }
    }
    options.onProgress?.({ bytes, total, resumedFrom: offset, done: false });
    try {
      for await (const chunk of response) {
        const buffer = chunk as Buffer;
        if (bytes + buffer.length > options.maxBytes) {
          // Only a body of unknown length gets here: a known total was checked before.
          tooLarge = true;
          response.destroy();
          break;
        }
        hash.update(buffer);
        try {
          await handle.write(buffer);
        } catch (error) {
          response.destroy();
          throw diskError(error, 'cannot write the download');
        }
        bytes += buffer.length;
        options.onProgress?.({ bytes, total, resumedFrom: offset, done: false });
      }
    } catch (error) {
      if (error instanceof PullError) throw error;
      throw interrupted(options.signal?.aborted ? 'cancelled' : error, bytes, total, options.host);
    }
    if (!tooLarge && total !== undefined && bytes !== total) {
      throw interrupted(undefined, bytes, total, options.host);
    }
    if (!tooLarge) await handle.sync();
  } finally {
    await handle.close().catch(() => undefined);
  }
  if (tooLarge) {
    await discardPart(partPath, options.sidecarPath).catch(() => undefined);
    throw new PullError(
      `${options.display} is larger than the size limit of ${formatBytes(options.maxBytes)} ` +
        '(the server did not say its size); the download was deleted. ' +
        'Pass --max-size SIZE (for example --max-size 512gb) to allow a bigger file',
    );
  }
  options.onProgress?.({ bytes, total: total ?? bytes, resumedFrom: offset, done: true });
  return bytes;
}

function interrupted(
  error: unknown,
  bytes: number,
  total: number | undefined,
  host: string,
): PullError {
  const code = (error as { code?: string } | undefined)?.code;
  const why =
    error instanceof IdleTimeout
      ? `${host} stopped sending`
      : error === 'cancelled' || (error as Error | undefined)?.name === 'AbortError'
        ? 'cancelled'
        : `the connection to ${host} was cut${code ? ` (${code})` : ''}`;
  const at =
    total !== undefined ? `${formatBytes(bytes)} of ${formatBytes(total)}` : formatBytes(bytes);
  return new PullError(
    `download interrupted at ${at}: ${why}; run the same command again to resume`,
    1,
    { cause: error },
  );
}

function statusError(
  status: number,
  headers: IncomingHttpHeaders,
  source: PullSource,
  sentToken: boolean,
): PullError {
  const said = header(headers, 'x-error-message');
  const detail = said !== undefined ? ` (${shown(said)})` : '';
  const where = source.hf ? `hf:${source.hf.repo}` : source.display;
  if (status === 401 || status === 403) {
    const hint = source.hf
      ? sentToken
        ? "HF_TOKEN was sent and refused: check that the token can read this repo and that you accepted the model's terms on its page"
        : 'the repo may be gated, private or misspelled; set HF_TOKEN to a Hugging Face token with read access'
      : 'the server wants credentials; for Hugging Face files use hf:owner/repo/file.gguf with HF_TOKEN';
    return new PullError(`access denied (HTTP ${status}) for ${where}${detail}: ${hint}`);
  }
  if (status === 404 || status === 410) {
    const hint = source.hf
      ? `check the repo, the file path "${source.hf.path}" and the revision "${source.hf.revision}"`
      : 'check the URL';
    return new PullError(`not found (HTTP ${status}): ${where}${detail}; ${hint}`);
  }
  if (status === 429) {
    const after = header(headers, 'retry-after');
    return new PullError(
      `rate limited (HTTP 429) by ${source.url.host}; try again${after ? ` in ${shown(after)} s` : ' later'}`,
    );
  }
  if (status >= 500) {
    return new PullError(`${source.url.host} failed (HTTP ${status})${detail}; try again later`);
  }
  return new PullError(`${source.url.host} answered HTTP ${status}${detail} for ${where}`);
}

function networkError(error: unknown, url: URL, source: URL): PullError {
  if (error instanceof PullError) return error;
  let cause: unknown = error;
  for (let depth = 0; cause !== undefined && depth < 5; depth++) {
    if (cause instanceof SsrfError) {
      return new PullError(
        `download refused: ${cause.message.replace(/^upstream connection refused: /, '')}`,
        1,
        { cause: error },
      );
    }
    cause = (cause as { cause?: unknown }).cause;
  }
  const code = (error as { code?: string }).code;
  const name = (error as Error).name;
  if (name === 'AbortError' || code === 'ABORT_ERR') {
    return new PullError('download cancelled', 1, { cause: error });
  }
  const host = url.host;
  const reason =
    code === 'ECONNREFUSED'
      ? `nothing answers at ${host} (ECONNREFUSED); is the server running?`
      : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
        ? `cannot resolve ${url.hostname} (${code}); check the host name and your network`
        : error instanceof IdleTimeout || code === 'ETIMEDOUT'
          ? `${host} did not answer in time (ETIMEDOUT); try again later`
          : `cannot reach ${host}${code ? ` (${code})` : ''}: ${redact(String((error as Error).message), [url, source])}`;
  return new PullError(`download failed: ${reason}`, 1, { cause: error });
}

function diskError(error: unknown, doing: string): PullError {
  if (error instanceof PullError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? 'no space left in the models folder; free some space and run the same command again to resume'
      : code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
        ? 'permission denied; check the owner and mode of PALISADE_HOME/models'
        : code === 'ELOOP'
          ? 'a symlink stands where the partial download goes; remove it'
          : (error as Error).message;
  return new PullError(`${doing}${code ? ` (${code})` : ''}: ${hint}`, 1, { cause: error });
}
