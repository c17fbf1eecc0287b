export { gateway, type GatewayOptions } from './plugin.js';
export {
  createDispatcher,
  type Dispatcher,
  type Dispatched,
  type DispatchCall,
  type DispatchOptions,
} from './dispatch.js';
export {
  readResponse,
  relayStream,
  findUsage,
  type StreamTranslation,
  type Usage,
} from './relay.js';
export type { ForwardBody } from './policy.js';
export {
  addUpstream,
  createUpstreamRegistry,
  listStoredUpstreams,
  removeUpstream,
  upstreamApiKey,
  upstreamKeyBox,
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
  type SsrfPolicy,
} from './ssrf-guard.js';
