export { startServer, type RunningServer, type ServeOptions } from './serve.js';
export { HttpError } from './errors.js';
export { AlreadyRunningError } from './pid-lock.js';
export { VERSION } from './version.js';
export { parseWith } from './validate.js';
export { acquirePidLock } from './pid-lock.js';
