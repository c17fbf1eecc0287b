import { randomBytes } from 'node:crypto';
import { HOTP, Secret, TOTP } from 'otpauth';
import QRCode from 'qrcode';
import { constantTimeEqual } from '../crypto/index.js';

export const TOTP_PERIOD_S = 30;

const ISSUER = 'Palisade';
const DIGITS = 6;
const ALGORITHM = 'SHA1';
const SECRET_BYTES = 20;
/** Steps either side of now that still count: a clock 30 s off, or a code typed slowly. */
const DRIFT_STEPS = 1;

/** A new TOTP secret: 160 random bits as base32 without padding (32 characters). */
export function newTotpSecret(): string {
  return new Secret({ buffer: new Uint8Array(randomBytes(SECRET_BYTES)).buffer }).base32;
}

/**
 * The `otpauth://` URL an authenticator app enrols from (shown as a QR code).
 *
 * @example
 * const secret = newTotpSecret();
 * const svg = await totpQrSvg(totpUrl(secret, 'alice'));
 */
export function totpUrl(secret: string, username: string): string {
  return new TOTP({
    issuer: ISSUER,
    label: username,
    secret: Secret.fromBase32(secret),
    algorithm: ALGORITHM,
    digits: DIGITS,
    period: TOTP_PERIOD_S,
  }).toString();
}

/** The QR code of `url` as a standalone SVG document. */
export async function totpQrSvg(url: string): Promise<string> {
  return QRCode.toString(url, { type: 'svg', errorCorrectionLevel: 'M' });
}

/** The code for the time `now` (ms since the epoch); for tests and tools. */
export function totpCode(secret: string, now = Date.now()): string {
  return codeAt(Secret.fromBase32(secret), stepAt(now));
}

/**
 * Accepts a 6-digit code (spaces ignored) from the step of `now` or one either side, if that
 * step is later than `lastStep`: a code works once, and never after a newer one was used.
 * Returns the step to store as the next `lastStep`, or null.
 *
 * @example
 * const step = acceptTotp(user.totpSecret, body.code, user.totpLastStep);
 * if (step === null) return refuse();
 * await saveLastStep(user.id, step);
 */
export function acceptTotp(
  secret: string,
  code: string,
  lastStep: number | null,
  now = Date.now(),
): number | null {
  const token = code.replace(/\s+/g, '');
  if (!/^[0-9]{6}$/.test(token)) return null;
  const key = Secret.fromBase32(secret);
  const current = stepAt(now);
  let accepted: number | null = null;
  // Every candidate is computed and compared, so timing does not tell which step matched.
  for (let step = current - DRIFT_STEPS; step <= current + DRIFT_STEPS; step += 1) {
    const matches = constantTimeEqual(codeAt(key, step), token);
    if (matches && accepted === null && (lastStep === null || step > lastStep)) accepted = step;
  }
  return accepted;
}

function stepAt(now: number): number {
  return TOTP.counter({ period: TOTP_PERIOD_S, timestamp: now });
}

function codeAt(secret: Secret, step: number): string {
  return HOTP.generate({ secret, algorithm: ALGORITHM, digits: DIGITS, counter: step });
}
