export { settings, type SettingsOptions } from './routes.js';
export {
  createUserSecrets,
  userSecretBox,
  userSecretContext,
  checkMcpUrl,
  maskedUrl,
  SecretError,
  MAX_MCP_SERVERS,
  MAX_UPSTREAM_KEYS,
  MAX_SECRET_LENGTH,
  type McpServer,
  type McpServerInfo,
  type UpstreamKeyInfo,
  type UserSecrets,
  type UserSecretsOptions,
} from './secrets.js';
export { defaultModelFor, setDefaultModel } from './preferences.js';
