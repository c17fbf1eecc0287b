export { gateway, type GatewayOptions } from './plugin.js';
export {
  addUpstream,
  createUpstreamRegistry,
  listStoredUpstreams,
  removeUpstream,
  LOCAL_PORTS,
  type Upstream,
  type UpstreamRegistry,
  type ModelEntry,
} from './upstreams.js';
export { applyPolicy, type RequestPolicy } from './policy.js';
export {
  assertUpstreamAllowed,
  checkUpstreamUrl,
  guardedLookup,
  isBlockedAddress,
  SsrfError,
  type Lookup,
} from './ssrf-guard.js';
