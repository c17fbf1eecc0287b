export { GgufError, readGgufHeader, type GgufInfo } from './gguf.js';
