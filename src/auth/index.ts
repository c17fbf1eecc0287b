export {
  API_KEY_PATTERN,
  KEY_NAME_PATTERN,
  createApiKey,
  createKeyRing,
  hashApiKey,
  listApiKeys,
  revokeApiKey,
  type ApiKey,
  type KeyCheck,
  type KeyRing,
  type NewApiKey,
} from './api-keys.js';
export { createRateLimiter, type BucketLimits, type RateLimiter } from './token-bucket.js';
export { compileGlob, matchesAny, type Glob } from './glob.js';
export { readPresentedKey } from './presented-key.js';
export { requireAdmin, requireUser, type SessionUser } from './request-user.js';
