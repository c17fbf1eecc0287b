export { createJobRunner, type JobRunner, type RunEvent, type RunnerOptions } from './runner.js';
export { jobsRoutes, type JobsRoutesOptions } from './routes.js';
export {
  describeTemplate,
  jobsPaths,
  loadTemplates,
  prepareJobsFolders,
  type JobTemplate,
  type ParamSpec,
  type TemplateSet,
} from './templates.js';
export { builtinTemplates, cliInvocation, type CliInvocation } from './builtins.js';
export { buildArgs, ParamsError, validateParams, type ParamProblem } from './params.js';
export {
  findRunRow,
  FINAL_STATUSES,
  listRunRows,
  logFileOf,
  queueRun,
  requestCancel,
  RUN_ID,
  toRun,
  type JobActor,
  type JobRun,
} from './runs.js';
export { readLogChunk } from './log-file.js';
