export { openStore, type Store } from './database.js';
export * from './schema/index.js';
