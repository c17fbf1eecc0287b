import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/** What a derived key is for; each purpose gets its own key from the master key. */
export type KeyPurpose = 'upstream-keys' | 'user-secrets' | 'totp';

const PREFIX = 'enc$v1$';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Derives a 32-byte subkey for one purpose with HKDF-SHA256 over the master key. */
export function deriveKey(master: Buffer, purpose: KeyPurpose): Buffer {
  return Buffer.from(hkdfSync('sha256', master, 'palisade', `palisade/${purpose}/v1`, 32));
}

/**
 * AES-256-GCM with a random 96-bit IV. The sealed form is
 * `enc$v1$<iv>$<ciphertext>$<tag>` in base64url, safe to store as text.
 *
 * @example
 * const box = secretBox(deriveKey(master, 'upstream-keys'));
 * const stored = box.seal('sk-live-...');
 * box.open(stored); // 'sk-live-...'
 */
export function secretBox(key: Buffer) {
  return {
    seal(plaintext: string, context = ''): string {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return PREFIX + [iv, body, tag].map((b) => b.toString('base64url')).join('$');
    },
    /** Opens a sealed value; throws if it was altered, sealed under another key or context. */
    open(sealed: string, context = ''): string {
      if (!isSealed(sealed)) throw new Error('not a sealed value');
      const [iv, body, tag] = sealed
        .slice(PREFIX.length)
        .split('$')
        .map((p) => Buffer.from(p, 'base64url'));
      if (!iv || !body || !tag || iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
        throw new Error('malformed sealed value');
      }
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    },
  };
}

export type SecretBox = ReturnType<typeof secretBox>;

export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX) && value.split('$').length === 5;
}
