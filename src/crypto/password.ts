import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { COMMON_PASSWORDS } from './common-passwords.js';

/** scrypt cost: `n` (CPU and memory, a power of two), block size `r`, parallelism `p`. */
export interface ScryptParams {
  n: number;
  r: number;
  p: number;
}

/** About 128 MiB and a few hundred milliseconds per hash. */
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ n: 131072, r: 8, p: 1 });
export const PASSWORD_MAX_BYTES = 256;
export const PASSWORD_MIN_LENGTH = 12;

const SALT_BYTES = 16;
const KEY_BYTES = 32;
const MAX_N = 2 ** 20;
const MAX_R = 64;
const MAX_P = 16;
/** 128·n·r bytes of scratch: the limits above alone would still allow 8 GiB. */
const MAX_MEMORY = 2 ** 30;
const SALT_B64 = /^[A-Za-z0-9_-]{22}$/;
const KEY_B64 = /^[A-Za-z0-9_-]{43}$/;

interface StoredHash {
  params: ScryptParams;
  salt: Buffer;
  key: Buffer;
}

/**
 * Hashes a password with scrypt into the self-describing form
 * `scrypt$n=131072$r=8$p=1$<salt>$<key>` (base64url, 16-byte salt, 32-byte key).
 * Runs on the libuv thread pool, so the event loop keeps serving while it works.
 * Throws for a password over PASSWORD_MAX_BYTES (verify could never accept it) or bad params.
 *
 * @example
 * const stored = await hashPassword(password, DEFAULT_SCRYPT);
 * await verifyPassword(password, stored); // true
 */
export async function hashPassword(password: string, params: ScryptParams): Promise<string> {
  if (tooLong(password)) throw new RangeError(`passwords are at most ${PASSWORD_MAX_BYTES} bytes`);
  if (!saneParams(params)) {
    throw new RangeError(
      `unusable scrypt parameters ${describe(params)}: n must be a power of two up to 2^20, ` +
        `r at most ${MAX_R}, p at most ${MAX_P}, and 128·n·r at most ${MAX_MEMORY / 2 ** 20} MiB`,
    );
  }
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, params);
  return ['scrypt', describe(params), salt.toString('base64url'), key.toString('base64url')].join(
    '$',
  );
}

/**
 * Checks a password against a stored hash in constant time. False for a mismatch, a password
 * over PASSWORD_MAX_BYTES (refused before any hashing) or a malformed stored hash, including
 * one whose parameters would cost absurd memory or time.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (tooLong(password)) return false;
  const parsed = parseStored(stored);
  if (parsed === undefined) return false;
  const key = await derive(password, parsed.salt, parsed.params);
  return timingSafeEqual(key, parsed.key);
}

/** True when `stored` was made with weaker parameters than `params` (or is malformed). */
export function needsRehash(stored: string, params: ScryptParams): boolean {
  const parsed = parseStored(stored);
  if (parsed === undefined) return true;
  const { n, r, p } = parsed.params;
  return n < params.n || r < params.r || p < params.p;
}

/**
 * Spends what verifyPassword spends with `params`, for a username that does not exist,
 * so a failed login takes as long whether or not the account is there.
 *
 * @example
 * if (user === undefined) {
 *   await burnPasswordCheck(password, DEFAULT_SCRYPT);
 *   return refuse();
 * }
 */
export async function burnPasswordCheck(password: string, params: ScryptParams): Promise<void> {
  await verifyPassword(password, decoyHash(params));
}

/**
 * Why a new password is refused, as one sentence naming the fix, or undefined when it is fine.
 *
 * @example
 * const problem = passwordProblem(body.password, body.username);
 * if (problem !== undefined) throw new HttpError(400, problem);
 */
export function passwordProblem(password: string, username?: string): string | undefined {
  if ([...password.normalize('NFC')].length < PASSWORD_MIN_LENGTH) {
    return `Use a password of at least ${PASSWORD_MIN_LENGTH} characters; a few random words make a good one.`;
  }
  if (tooLong(password)) {
    return `Use a password of at most ${PASSWORD_MAX_BYTES} bytes (fewer characters, or fewer non-ASCII ones).`;
  }
  const lower = password.toLowerCase();
  if (COMMON_PASSWORDS.has(lower)) {
    return 'That password is one of the most common ones and is guessed first; choose another.';
  }
  if (username !== undefined && username !== '' && lower === username.toLowerCase()) {
    return 'The password must not be the username; choose another.';
  }
  return undefined;
}

function tooLong(password: string): boolean {
  // Cheap bound first: each UTF-16 unit is at most 3 UTF-8 bytes.
  return password.length > PASSWORD_MAX_BYTES || Buffer.byteLength(password) > PASSWORD_MAX_BYTES;
}

function saneParams({ n, r, p }: ScryptParams): boolean {
  return (
    Number.isSafeInteger(n) &&
    Number.isSafeInteger(r) &&
    Number.isSafeInteger(p) &&
    n >= 2 &&
    n <= MAX_N &&
    (n & (n - 1)) === 0 &&
    r >= 1 &&
    r <= MAX_R &&
    p >= 1 &&
    p <= MAX_P &&
    128 * n * r <= MAX_MEMORY
  );
}

function describe({ n, r, p }: ScryptParams): string {
  return `n=${n}$r=${r}$p=${p}`;
}

/** A decimal integer without sign, leading zeros or exponent, so `n=1e3` cannot sneak in. */
function readParam(field: string | undefined, name: string): number | undefined {
  const match = field?.match(new RegExp(`^${name}=([1-9][0-9]{0,7})$`));
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

function parseStored(stored: string): StoredHash | undefined {
  if (stored.length > 200) return undefined;
  const [scheme, nField, rField, pField, salt, key, ...rest] = stored.split('$');
  if (scheme !== 'scrypt' || rest.length > 0) return undefined;
  const n = readParam(nField, 'n');
  const r = readParam(rField, 'r');
  const p = readParam(pField, 'p');
  if (n === undefined || r === undefined || p === undefined) return undefined;
  const params = { n, r, p };
  if (!saneParams(params)) return undefined;
  if (salt === undefined || key === undefined || !SALT_B64.test(salt) || !KEY_B64.test(key)) {
    return undefined;
  }
  return { params, salt: Buffer.from(salt, 'base64url'), key: Buffer.from(key, 'base64url') };
}

function derive(password: string, salt: Buffer, { n, r, p }: ScryptParams): Promise<Buffer> {
  // OpenSSL needs 128·r·(n + p + 2) bytes; the margin keeps rounding from tripping maxmem.
  const maxmem = 128 * r * (n + p + 2) + 1024 * 1024;
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, { N: n, r, p, maxmem }, (err, key) =>
      err === null ? resolve(key) : reject(err),
    );
  });
}

const decoys = new Map<string, string>();

/** A well-formed hash that no password matches: verifying against it costs a real verify. */
function decoyHash(params: ScryptParams): string {
  const label = describe(params);
  let decoy = decoys.get(label);
  if (decoy === undefined) {
    const salt = randomBytes(SALT_BYTES).toString('base64url');
    decoy = ['scrypt', label, salt, randomBytes(KEY_BYTES).toString('base64url')].join('$');
    if (decoys.size < 16) decoys.set(label, decoy);
  }
  return decoy;
}
