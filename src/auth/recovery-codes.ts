import { randomInt } from 'node:crypto';
import { sha256Hex } from '../crypto/index.js';

export const RECOVERY_CODE_COUNT = 10;

/** Digits and lower-case letters without the look-alikes 0/o and 1/l/i: 31 symbols. */
const ALPHABET = '23456789abcdefghjkmnpqrstuvwxyz';
const GROUPS = 4;
const GROUP_LENGTH = 4;
/** 16 symbols of 31 is 79 bits (12, as in `k7qd-9xm2-4hpa`, would be 59). */
const CODE_LENGTH = GROUPS * GROUP_LENGTH;
const SHAPE = new RegExp(`^[${ALPHABET}]{${CODE_LENGTH}}$`);

/**
 * One-time recovery codes such as `k7qd-9xm2-4hpa-3bcf`, each drawn uniformly (79 bits).
 * Show them once; store only hashRecoveryCode of each.
 *
 * @example
 * const codes = newRecoveryCodes();
 * await saveRecoveryHashes(user.id, codes.map(hashRecoveryCode));
 */
export function newRecoveryCodes(count = RECOVERY_CODE_COUNT): string[] {
  const codes = new Set<string>();
  while (codes.size < count) codes.add(newCode());
  return [...codes];
}

/** SHA-256 hex of the code as typed, normalised: lower case, spaces and dashes removed. */
export function hashRecoveryCode(code: string): string {
  return sha256Hex(normalise(code));
}

/** True for input shaped like a recovery code, to tell it from a 6-digit TOTP code. */
export function looksLikeRecoveryCode(input: string): boolean {
  return input.length <= 64 && SHAPE.test(normalise(input));
}

function newCode(): string {
  const symbols = Array.from({ length: CODE_LENGTH }, () => ALPHABET[randomInt(ALPHABET.length)]);
  const groups = Array.from({ length: GROUPS }, (_, i) =>
    symbols.slice(i * GROUP_LENGTH, (i + 1) * GROUP_LENGTH).join(''),
  );
  return groups.join('-');
}

function normalise(code: string): string {
  return code.toLowerCase().replace(/[\s-]+/g, '');
}
