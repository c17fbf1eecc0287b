/**
 * Embedded inference with node-llama-cpp: models load on first use, answer up to `parallel`
 * requests at once (one context sequence each) behind a bounded queue, stop generating when
 * the caller's signal aborts, and are unloaded after an idle period.
 */
import { availableParallelism } from 'node:os';
import type { Logger } from 'pino';
import type {
  ChatHistoryItem,
  ChatWrapper,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaEmbeddingContext,
  LlamaModel,
} from 'node-llama-cpp';
import type { LocalGpu } from '../config/index.js';
import type { LocalModel } from './catalog.js';
import { readGgufHeader } from './gguf.js';
import { probeModel } from './probe.js';
import { createRequestQueue, type RequestQueue } from './queue.js';

export interface EngineOptions {
  logger: Logger;
  gpu: LocalGpu;
  /** CPU threads; 0: one per core. */
  threads: number;
  /** Tokens per sequence, capped at the model's trained context. */
  contextSize: number;
  parallel: number;
  queueLimit: number;
  idleUnloadMs: number;
  /** Called once per request with how it ended (for metrics). */
  onOutcome?: (outcome: GenerationOutcome) => void;
}

export interface GenerationOutcome {
  model: string;
  kind: 'chat' | 'completion' | 'embedding';
  status: 'completed' | 'cancelled' | 'failed';
  promptTokens: number;
  completionTokens: number;
}

export interface SamplingOptions {
  maxTokens: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  stop?: string[];
  signal: AbortSignal;
  /** Each piece of text as it is generated. */
  onText?: (text: string) => void;
}

export interface Generated {
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  /** The signal aborted: `text` is what was generated until then. */
  cancelled: boolean;
}

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  text: string;
}

/** A prompt that does not fit the context; answered as a 400. */
export class ContextLengthError extends Error {
  override name = 'ContextLengthError';
}

interface Loaded {
  model: LlamaModel;
  /** Resolved once: working it out renders the model's Jinja template (hundreds of ms). */
  chatWrapper: ChatWrapper;
  context: LlamaContext;
  contextSize: number;
  free: LlamaContextSequence[];
  embedding?: Promise<LlamaEmbeddingContext>;
}

interface Slot {
  source: LocalModel;
  queue: RequestQueue;
  loaded?: Promise<Loaded>;
  /** A running unload; a new load waits for it. */
  unloading?: Promise<void>;
  idleTimer?: NodeJS.Timeout;
  active: number;
  /** Replaced by a newer file of the same name: unloaded as soon as its requests end. */
  retired?: boolean;
}

export function createEngine(options: EngineOptions) {
  const { logger } = options;
  // llama.cpp's own default can be twice the cores, which makes every token crawl when the
  // machine is busy (measured: 2 tokens/s against 3000 with one thread, tiny model, 2 cores).
  const threads = options.threads > 0 ? options.threads : availableParallelism();
  const slots = new Map<string, Slot>();
  let llama: Promise<Llama> | undefined;
  let closed = false;

  function getRuntime(): Promise<Llama> {
    llama ??= (async () => {
      const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
      return getLlama({
        gpu: options.gpu === 'auto' ? 'auto' : options.gpu === 'false' ? false : options.gpu,
        // Only the prebuilt binaries: never compile or download anything at run time.
        build: 'never',
        skipDownload: true,
        progressLogs: false,
        logLevel: LlamaLogLevel.warn,
        logger: (level, message) => {
          const text = message.trim();
          if (text === '') return;
          if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) {
            logger.error({ component: 'llama' }, text);
          } else logger.debug({ component: 'llama' }, text);
        },
        maxThreads: threads,
      });
    })();
    return llama;
  }

  function slotFor(source: LocalModel): Slot {
    let slot = slots.get(source.id);
    if (
      slot &&
      (slot.source.path !== source.path || slot.source.modifiedMs !== source.modifiedMs)
    ) {
      // The file changed: new requests get the new one; the old one finishes what it has.
      slot.retired = true;
      if (slot.active === 0 && slot.queue.waiting === 0) void unload(slot);
      slot = undefined;
    }
    if (!slot) {
      slot = {
        source,
        queue: createRequestQueue(options.parallel, options.queueLimit),
        active: 0,
      };
      slots.set(source.id, slot);
    }
    return slot;
  }

  async function load(slot: Slot): Promise<Loaded> {
    if (slot.unloading) await slot.unloading;
    // The file may have changed since it was listed: check it again right before loading.
    const info = await readGgufHeader(slot.source.path);
    await probeModel(slot.source.path);
    const runtime = await getRuntime();
    const started = Date.now();
    const model = await runtime.loadModel({
      modelPath: slot.source.path,
      ...(options.gpu === 'false' ? { gpuLayers: 0 } : {}),
    });
    const contextSize = Math.min(options.contextSize, info.contextLength ?? options.contextSize);
    try {
      const context = await model.createContext({
        contextSize,
        sequences: options.parallel,
        threads,
      });
      const free: LlamaContextSequence[] = [];
      for (let i = 0; i < options.parallel; i++) free.push(context.getSequence());
      const { resolveChatWrapper } = await import('node-llama-cpp');
      const chatWrapper = resolveChatWrapper(model);
      logger.info(
        { model: slot.source.id, ms: Date.now() - started, contextSize, gpu: runtime.gpu },
        'local model loaded',
      );
      return { model, chatWrapper, context, contextSize, free };
    } catch (error) {
      await model.dispose();
      throw error;
    }
  }

  async function unload(slot: Slot): Promise<void> {
    const loaded = slot.loaded;
    if (!loaded) return;
    slot.loaded = undefined;
    slot.unloading = (async () => {
      try {
        const ready = await loaded;
        if (ready.embedding) await (await ready.embedding).dispose().catch(() => undefined);
        await ready.context.dispose();
        await ready.model.dispose();
        logger.info({ model: slot.source.id }, 'local model unloaded');
      } catch {
        // It never finished loading: nothing to free.
      }
    })();
    await slot.unloading;
    slot.unloading = undefined;
  }

  /** Takes a queue slot and the loaded model; the returned `done` must be called once. */
  async function begin(source: LocalModel, signal: AbortSignal) {
    if (closed) throw new Error('the embedded model server is shutting down');
    const slot = slotFor(source);
    const release = await slot.queue.acquire(signal);
    slot.active += 1;
    clearTimeout(slot.idleTimer);
    const done = () => {
      slot.active -= 1;
      release();
      if (slot.active === 0 && slot.queue.waiting === 0 && !closed) {
        if (slot.retired) return void unload(slot);
        slot.idleTimer = setTimeout(() => void unload(slot), options.idleUnloadMs);
        slot.idleTimer.unref();
      }
    };
    try {
      const loading = (slot.loaded ??= load(slot));
      const loaded = await loading.catch((error: unknown) => {
        // Only the failed load is forgotten, not a newer one another request started since.
        if (slot.loaded === loading) slot.loaded = undefined;
        throw error;
      });
      return { slot, loaded, done };
    } catch (error) {
      done();
      throw error;
    }
  }

  function report(outcome: GenerationOutcome) {
    options.onOutcome?.(outcome);
  }

  /** Runs `body` with a free sequence of the model, returning the sequence clean. */
  async function withSequence<T>(
    source: LocalModel,
    kind: GenerationOutcome['kind'],
    signal: AbortSignal,
    body: (loaded: Loaded, sequence: LlamaContextSequence) => Promise<T & Generated>,
  ): Promise<T & Generated> {
    const { loaded, done } = await begin(source, signal);
    const sequence = loaded.free.pop();
    if (!sequence) {
      done();
      throw new Error('no free sequence although the queue granted a slot');
    }
    try {
      const result = await body(loaded, sequence);
      report({
        model: source.id,
        kind,
        status: result.cancelled ? 'cancelled' : 'completed',
        promptTokens: result.promptTokens,
        completionTokens: result.completionTokens,
      });
      return result;
    } catch (error) {
      report({ model: source.id, kind, status: 'failed', promptTokens: 0, completionTokens: 0 });
      throw error;
    } finally {
      loaded.free.push(sequence);
      done();
    }
  }

  function clampMaxTokens(loaded: Loaded, requested: number): number {
    return Math.max(1, Math.min(requested, loaded.contextSize));
  }

  return {
    /** Answers a conversation with the model's own chat template. */
    async chat(
      source: LocalModel,
      turns: ChatTurn[],
      sampling: SamplingOptions,
    ): Promise<Generated> {
      const { LlamaChat } = await import('node-llama-cpp');
      return withSequence(source, 'chat', sampling.signal, async (loaded, sequence) => {
        const history: ChatHistoryItem[] = turns.map((turn) =>
          turn.role === 'assistant'
            ? { type: 'model', response: [turn.text] }
            : { type: turn.role, text: turn.text },
        );
        history.push({ type: 'model', response: [] });
        const chat = new LlamaChat({
          contextSequence: sequence,
          chatWrapper: loaded.chatWrapper,
          autoDisposeSequence: false,
        });
        const meter = sequence.tokenMeter.getState();
        try {
          const result = await chat.generateResponse(history, {
            ...samplingFor(sampling),
            maxTokens: clampMaxTokens(loaded, sampling.maxTokens),
          });
          const completionTokens =
            sequence.tokenMeter.getState().usedOutputTokens - meter.usedOutputTokens;
          const reason = result.metadata.stopReason;
          return {
            text: result.response,
            finishReason: reason === 'maxTokens' ? 'length' : 'stop',
            promptTokens: Math.max(0, sequence.contextTokens.length - completionTokens),
            completionTokens,
            cancelled: reason === 'abort',
          };
        } catch (error) {
          throw contextError(error);
        } finally {
          chat.dispose({ disposeSequence: false });
        }
      });
    },

    /** Continues a plain-text prompt. */
    async complete(
      source: LocalModel,
      prompt: string,
      sampling: SamplingOptions,
    ): Promise<Generated> {
      const { LlamaCompletion } = await import('node-llama-cpp');
      return withSequence(source, 'completion', sampling.signal, async (loaded, sequence) => {
        const promptTokens = loaded.model.tokenize(prompt).length;
        if (promptTokens >= loaded.contextSize) {
          throw new ContextLengthError(
            `the prompt is ${promptTokens} tokens; the context holds ${loaded.contextSize} (PALISADE_LOCAL_CONTEXT)`,
          );
        }
        const completion = new LlamaCompletion({
          contextSequence: sequence,
          autoDisposeSequence: false,
        });
        const meter = sequence.tokenMeter.getState();
        try {
          const result = await completion.generateCompletionWithMeta(prompt, {
            ...samplingFor(sampling),
            maxTokens: clampMaxTokens(loaded, sampling.maxTokens),
          });
          const reason = result.metadata.stopReason;
          return {
            text: result.response,
            finishReason: reason === 'maxTokens' ? 'length' : 'stop',
            promptTokens,
            completionTokens:
              sequence.tokenMeter.getState().usedOutputTokens - meter.usedOutputTokens,
            cancelled: reason === 'abort',
          };
        } catch (error) {
          throw contextError(error);
        } finally {
          completion.dispose({ disposeSequence: false });
        }
      });
    },

    /** One vector per input text. */
    async embed(
      source: LocalModel,
      inputs: string[],
      signal: AbortSignal,
    ): Promise<{ vectors: number[][]; promptTokens: number }> {
      const { loaded, done } = await begin(source, signal);
      try {
        let promptTokens = 0;
        for (const input of inputs) {
          const count = loaded.model.tokenize(input).length;
          if (count > loaded.contextSize) {
            throw new ContextLengthError(
              `an input is ${count} tokens; the context holds ${loaded.contextSize} (PALISADE_LOCAL_CONTEXT)`,
            );
          }
          promptTokens += count;
        }
        const creating = (loaded.embedding ??= loaded.model.createEmbeddingContext({
          contextSize: loaded.contextSize,
          threads,
        }));
        const context = await creating.catch((error: unknown) => {
          if (loaded.embedding === creating) loaded.embedding = undefined;
          throw error;
        });
        const vectors: number[][] = [];
        for (const input of inputs) {
          signal.throwIfAborted();
          vectors.push([...(await context.getEmbeddingFor(input)).vector]);
        }
        report({
          model: source.id,
          kind: 'embedding',
          status: 'completed',
          promptTokens,
          completionTokens: 0,
        });
        return { vectors, promptTokens };
      } catch (error) {
        report({
          model: source.id,
          kind: 'embedding',
          status: signal.aborted ? 'cancelled' : 'failed',
          promptTokens: 0,
          completionTokens: 0,
        });
        throw error;
      } finally {
        done();
      }
    },

    /** Requests running and waiting, for metrics and the admin page. */
    stats(): { loaded: number; running: number; waiting: number } {
      let loaded = 0;
      let running = 0;
      let waiting = 0;
      for (const slot of slots.values()) {
        if (slot.loaded) loaded += 1;
        running += slot.queue.running;
        waiting += slot.queue.waiting;
      }
      return { loaded, running, waiting };
    },

    async close(): Promise<void> {
      closed = true;
      for (const slot of slots.values()) clearTimeout(slot.idleTimer);
      await Promise.all([...slots.values()].map(unload));
      if (llama) await (await llama.catch(() => undefined))?.dispose();
    },
  };
}

export type Engine = ReturnType<typeof createEngine>;

function samplingFor(sampling: SamplingOptions) {
  return {
    signal: sampling.signal,
    stopOnAbortSignal: true,
    ...(sampling.onText ? { onTextChunk: sampling.onText } : {}),
    ...(sampling.temperature !== undefined ? { temperature: sampling.temperature } : {}),
    ...(sampling.topP !== undefined ? { topP: sampling.topP } : {}),
    ...(sampling.seed !== undefined ? { seed: sampling.seed } : {}),
    ...(sampling.stop && sampling.stop.length > 0 ? { customStopTriggers: sampling.stop } : {}),
  };
}

/** llama.cpp's "does not fit" errors become a ContextLengthError (a 400, not a 500). */
function contextError(error: unknown): unknown {
  const message = error instanceof Error ? error.message : '';
  if (/context size|too long|exceeds|context is full|context shift/i.test(message)) {
    return new ContextLengthError(`${message} (PALISADE_LOCAL_CONTEXT sets the context size)`);
  }
  return error;
}
