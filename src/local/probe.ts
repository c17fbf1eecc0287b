/**
 * A first load of each model file in a throwaway child process. llama.cpp aborts the whole
 * process on some malformed models that pass every structural check (an assertion in its
 * tensor code), so a file is loaded in-process only after a child has loaded it and run one
 * token. The answer is kept per file identity (device, inode, size, mtime).
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';

/** The file crashed or failed its test load; it is not loaded in the server. */
export class ModelProbeError extends Error {
  override name = 'ModelProbeError';
}

export interface ProbeOptions {
  /** How long a test load may take. */
  timeoutMs?: number;
}

// Plain JavaScript run with `node -e`: no TypeScript and no project imports, so it works the
// same from the sources and from dist. (Not `--input-type=module`: node-llama-cpp tests its
// binary in a child process that would inherit the flag and fail.)
const PROBE_SCRIPT = `
(async () => {
  const [url, modelPath] = process.argv.slice(1);
  const { getLlama, LlamaCompletion, LlamaLogLevel } = await import(url);
  const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: 1 });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: Math.min(256, model.trainContextSize), threads: 1 });
  await new LlamaCompletion({ contextSequence: context.getSequence() }).generateCompletion('a', { maxTokens: 1 });
  process.stdout.write('ok');
  process.exit(0);
})().catch((error) => {
  process.stderr.write(String(error && error.message ? error.message : error) + '\\n');
  process.exit(1);
});
`;

const results = new Map<string, Promise<void>>();

function identity(path: string): string {
  const stat = statSync(path);
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeMs}`;
}

/** Resolves when the model at `path` loads and generates in a child process; else rejects. */
export function probeModel(path: string, options: ProbeOptions = {}): Promise<void> {
  const key = `${path}\0${identity(path)}`;
  let result = results.get(key);
  if (result === undefined) {
    result = runProbe(path, options.timeoutMs ?? 300_000);
    results.set(key, result);
  }
  return result;
}

function runProbe(path: string, timeoutMs: number): Promise<void> {
  const url = import.meta.resolve('node-llama-cpp');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', PROBE_SCRIPT, url, path], {
      shell: false,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 64 * 1024) stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(new ModelProbeError(`the test load could not start: ${error.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && stdout === 'ok') return resolve();
      const why = lastLine(stderr);
      reject(
        new ModelProbeError(
          signal === 'SIGKILL'
            ? `the test load did not finish within ${Math.round(timeoutMs / 1000)} s`
            : `llama.cpp ${signal ? `crashed (${signal})` : `failed (exit ${code})`} loading it in a test process${why ? `: ${why}` : ''}`,
        ),
      );
    });
  });
}

/** The most telling line of a crash: llama.cpp's assertion, else the last line. */
function lastLine(text: string): string {
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const assertion = lines.find((line) => /GGML_ASSERT|error/i.test(line));
  return (assertion ?? lines.at(-1) ?? '').replace(/\/[^\s:]+\//g, '').slice(0, 300);
}
