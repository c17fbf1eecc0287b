export { loadMasterKey, MASTER_KEY_BYTES } from './master-key.js';
export { deriveKey, secretBox, isSealed, type KeyPurpose, type SecretBox } from './secret-box.js';
export { sha256Hex, randomToken, constantTimeEqual } from './hash.js';
export {
  burnPasswordCheck,
  DEFAULT_SCRYPT,
  hashPassword,
  needsRehash,
  passwordProblem,
  PASSWORD_MAX_BYTES,
  PASSWORD_MIN_LENGTH,
  verifyPassword,
  type ScryptParams,
} from './password.js';
