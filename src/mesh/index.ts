export { createMesh, type Mesh, type MeshOptions } from './service.js';
export {
  createMeshBroker,
  DEFAULT_MESH_LIMITS,
  type BrokerNotice,
  type ClaimView,
  type EventType,
  type EventView,
  type MeshBroker,
  type MeshCounts,
  type MeshLimits,
  type MessageView,
  type PeerView,
  type Scope,
  type StateView,
} from './broker.js';
export { readMeshEndpoint } from './token.js';
export { MAX_PAYLOAD_BYTES, MAX_SUMMARY_CHARS, MESH_BODY_LIMIT, PEER_ID } from './schemas.js';
export {
  createMeshClient,
  describeNoBroker,
  MeshRequestError,
  MeshUnavailableError,
  startBackgroundBroker,
  type MeshClient,
  type MeshStatus,
} from './client.js';
export {
  runMcpServer,
  detectAgent,
  findGitRoot,
  OPERATOR_AGENT,
  type McpServerOptions,
} from './mcp-server.js';
export { framePeerContent, PEER_CONTENT_NOTICE, type PeerContent } from './framing.js';
export { createSseParser, streamEventsOnce, type SseFrame } from './sse.js';
export { matchPeer, type PeerMatch } from './peer-ref.js';
