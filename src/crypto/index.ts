export { loadMasterKey, MASTER_KEY_BYTES } from './master-key.js';
export { deriveKey, secretBox, isSealed, type KeyPurpose, type SecretBox } from './secret-box.js';
export { sha256Hex, randomToken, constantTimeEqual } from './hash.js';
