export {
  API_KEY_PATTERN,
  KEY_NAME_PATTERN,
  createApiKey,
  createKeyRing,
  hashApiKey,
  keyAuditDetails,
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
export { isLocalRequest, requireAdmin, requireUser, type SessionUser } from './request-user.js';
export { acceptTotp, newTotpSecret, totpCode, totpQrSvg, totpUrl, TOTP_PERIOD_S } from './totp.js';
export {
  hashRecoveryCode,
  looksLikeRecoveryCode,
  newRecoveryCodes,
  RECOVERY_CODE_COUNT,
} from './recovery-codes.js';
export { createLoginThrottle, type LoginThrottle } from './login-throttle.js';
export { createWindowLimiter, type WindowLimiter } from './window-limiter.js';
export {
  AccountError,
  USERNAME_PATTERN,
  LOCAL_USERNAME,
  countOtherUsers,
  createUser,
  createFirstAdmin,
  describeUser,
  ensureLocalUser,
  findUser,
  findUserByName,
  isSetupClosed,
  listUsers,
  requireUserRow,
  resetUserTotp,
  revokeAllSessions,
  setUserDisabled,
  setUserPassword,
  setUserRole,
  type NewUser,
} from './users.js';
export {
  createSession,
  listSessions,
  pruneSessions,
  resolveSession,
  revokeSession,
  type ResolvedSession,
} from './sessions.js';
export { readCookie, setCookie, clearCookie, type CookiePolicy } from './cookies.js';
export { authRoutes, describeMe, type AuthRoutesOptions } from './routes.js';
