/**
 * Tool-call arguments from small local models are often not quite JSON. This module turns
 * any text into a JSON object, streaming: every piece `push` returns extends a valid JSON
 * prefix (so Anthropic's SDK, which parses `input_json_delta` prefixes as they arrive,
 * never sees a syntax error) and `end` closes it into a valid object.
 *
 * Repairs that keep the meaning are silent: a leading code fence, trailing commas, missing
 * commas between members, single-quoted strings, unquoted keys, Python literals
 * (True/False/None), raw control characters and invalid escapes in strings, numbers such as
 * `1.` or `+1`, extra closing brackets after the object.
 *
 * Anything that loses or guesses data (truncated arguments, text that is not an object,
 * junk inside the object, nesting deeper than {@link MAX_JSON_DEPTH}) is "lossy": the object
 * still closes, and a `_raw_arguments` member holding the model's exact text is added to it.
 * A client validating the tool input against its schema then refuses the call and tells the
 * model, instead of running a tool with guessed arguments.
 */

/** Deepest nesting accepted in tool inputs and schemas, both directions. */
export const MAX_JSON_DEPTH = 64;

/** The member added to a lossily repaired object, holding the model's exact text. */
export const RAW_ARGUMENTS_KEY = '_raw_arguments';

export interface JsonRepairStream {
  /** Feeds a fragment; returns output that extends the valid JSON prefix so far. */
  push(text: string): string;
  /** Ends the input; returns the output that closes the object. Call once. */
  end(): string;
  /** True once the top-level object has closed (its final `}` is held back until `end`). */
  readonly complete: boolean;
  /** True when the repair lost or guessed data; `end` then adds {@link RAW_ARGUMENTS_KEY}. */
  readonly lossy: boolean;
}

type Mode =
  | 'before'
  | 'fence'
  | 'key'
  | 'unquoted-key'
  | 'colon'
  | 'value'
  | 'after'
  | 'string'
  | 'number'
  | 'word'
  | 'done'
  | 'broken';

const LITERALS = new Map([
  ['true', 'true'],
  ['True', 'true'],
  ['TRUE', 'true'],
  ['false', 'false'],
  ['False', 'false'],
  ['FALSE', 'false'],
  ['null', 'null'],
  ['None', 'null'],
  ['NULL', 'null'],
  ['nil', 'null'],
  ['undefined', 'null'],
]);

const CONTROL_ESCAPES = new Map([
  ['\n', '\\n'],
  ['\r', '\\r'],
  ['\t', '\\t'],
  ['\b', '\\b'],
  ['\f', '\\f'],
]);

const STRICT_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;
const TOKEN_LIMIT = 64;

const isSpace = (c: string) => c === ' ' || c === '\n' || c === '\r' || c === '\t';
const isDigit = (c: string) => c >= '0' && c <= '9';
const isIdentStart = (c: string) =>
  (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c === '$';
const isIdentPart = (c: string) => isIdentStart(c) || isDigit(c) || c === '-';
const isNumberPart = (c: string) =>
  isDigit(c) || c === '.' || c === 'e' || c === 'E' || c === '+' || c === '-';
const isHex = (c: string) => isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');

/** Characters that end a run of plain string content, per quote style (`[^ -\uffff]` is a control character). */
const SPECIAL_IN_DOUBLE = /["\\]|[^ -\uffff]/g;
const SPECIAL_IN_SINGLE = /["'\\]|[^ -\uffff]/g;

export function createJsonRepairStream(): JsonRepairStream {
  const stack: Array<'{' | '['> = [];
  let mode: Mode = 'before';
  let out = '';
  let raw = '';
  // Plain data properties: object-literal getters are slow to create, and one of these is made per tool call.
  const state = { push, end, complete: false, lossy: false };
  let ended = false;
  let pendingComma = false;
  let topMembers = 0;
  let token = '';
  let quote = '"';
  let inKey = false;
  let escape = false;
  let unicode: string | null = null;

  const top = () => stack[stack.length - 1];

  function beginValue() {
    if (pendingComma) out += ',';
    pendingComma = false;
  }

  function beginKey() {
    beginValue();
    if (stack.length === 1) topMembers += 1;
  }

  function closeTop() {
    pendingComma = false;
    const closed = stack.pop();
    if (stack.length === 0) {
      mode = 'done';
      state.complete = true;
      return;
    }
    out += closed === '{' ? '}' : ']';
    mode = 'after';
  }

  function closeWith(closer: string) {
    const opener = closer === '}' ? '{' : '[';
    if (top() === opener) return closeTop();
    state.lossy = true;
    const at = stack.lastIndexOf(opener);
    if (at === -1) return;
    while (stack.length > at + 1) closeTop();
    closeTop();
  }

  function emitNumber() {
    beginValue();
    if (STRICT_NUMBER.test(token)) {
      out += token;
      return;
    }
    const value = Number(token);
    if (Number.isFinite(value)) {
      out += JSON.stringify(value);
    } else {
      out += 'null';
      state.lossy = true;
    }
  }

  function emitWord() {
    beginValue();
    const literal = LITERALS.get(token);
    if (literal) {
      out += literal;
    } else {
      out += JSON.stringify(token);
      state.lossy = true;
    }
  }

  function startString(c: string, key: boolean) {
    if (key) beginKey();
    else beginValue();
    out += '"';
    quote = c;
    inKey = key;
    mode = 'string';
  }

  function stringChar(c: string) {
    if (unicode !== null) {
      if (isHex(c)) {
        unicode += c;
        if (unicode.length === 4) {
          out += `\\u${unicode}`;
          unicode = null;
        }
        return;
      }
      out += `\\\\u${unicode}`;
      unicode = null;
    } else if (escape) {
      escape = false;
      if (c === 'u') {
        unicode = '';
        return;
      }
      if ('"\\/bfnrt'.includes(c)) {
        out += `\\${c}`;
        return;
      }
      if (c === "'") {
        out += "'";
        return;
      }
      out += '\\\\';
    }
    if (c === '\\') {
      escape = true;
    } else if (c === quote) {
      out += '"';
      mode = inKey ? 'colon' : 'after';
    } else if (c === '"') {
      out += '\\"';
    } else if (c < ' ') {
      out += CONTROL_ESCAPES.get(c) ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
    } else {
      out += c;
    }
  }

  function step(c: string): void {
    switch (mode) {
      case 'before':
        if (c === '{') {
          out += '{';
          stack.push('{');
          mode = 'key';
        } else if (c === '`') {
          mode = 'fence';
        } else if (!isSpace(c)) {
          state.lossy = true;
        }
        return;
      case 'fence':
        if (c !== '`' && !isIdentPart(c)) {
          mode = 'before';
          step(c);
        }
        return;
      case 'key':
        if (isSpace(c) || c === ',') return;
        if (c === '"' || c === "'") return startString(c, true);
        if (c === '}') return closeTop();
        if (c === ']') {
          state.lossy = true;
          if (stack.includes('[')) closeWith(c);
          return;
        }
        if (isIdentStart(c) || isDigit(c)) {
          beginKey();
          out += `"${c}`;
          mode = 'unquoted-key';
          return;
        }
        state.lossy = true;
        return;
      case 'unquoted-key':
        if (isIdentPart(c)) {
          out += c;
          return;
        }
        out += '"';
        mode = 'colon';
        return step(c);
      case 'colon':
        if (isSpace(c)) return;
        out += ':';
        mode = 'value';
        if (c !== ':') {
          state.lossy = true;
          step(c);
        }
        return;
      case 'value':
        return valueChar(c);
      case 'string':
        return stringChar(c);
      case 'number':
        if (isNumberPart(c) && token.length < TOKEN_LIMIT) {
          token += c;
          return;
        }
        emitNumber();
        mode = 'after';
        return step(c);
      case 'word':
        if (isIdentPart(c) && token.length < TOKEN_LIMIT) {
          token += c;
          return;
        }
        emitWord();
        mode = 'after';
        return step(c);
      case 'after':
        return afterChar(c);
      case 'done':
        if (!isSpace(c) && c !== '`' && c !== '}' && c !== ']') state.lossy = true;
        return;
      case 'broken':
        return;
    }
  }

  function valueChar(c: string) {
    if (isSpace(c)) return;
    if (c === '"' || c === "'") return startString(c, false);
    if (c === '{' || c === '[') {
      if (stack.length >= MAX_JSON_DEPTH) {
        beginValue();
        out += 'null';
        state.lossy = true;
        mode = 'broken';
        return;
      }
      beginValue();
      out += c;
      stack.push(c);
      mode = c === '{' ? 'key' : 'value';
      return;
    }
    if (c === ']' && top() === '[') return closeTop();
    if (c === '}' || c === ']') {
      if (top() === '{') {
        out += 'null';
        state.lossy = true;
      }
      mode = 'after';
      return step(c);
    }
    if (c === '-' || c === '+' || c === '.' || isDigit(c)) {
      token = c;
      mode = 'number';
      return;
    }
    if (isIdentStart(c)) {
      token = c;
      mode = 'word';
      return;
    }
    state.lossy = true;
  }

  function afterChar(c: string) {
    if (isSpace(c)) return;
    if (c === ',') {
      pendingComma = true;
      mode = top() === '{' ? 'key' : 'value';
      return;
    }
    if (c === '}' || c === ']') return closeWith(c);
    const startsMember = top() === '{' && (c === '"' || c === "'" || isIdentStart(c));
    const startsElement =
      top() === '[' &&
      (c === '"' || c === "'" || c === '{' || c === '[' || c === '-' || isDigit(c));
    if (startsMember || startsElement) {
      pendingComma = true;
      mode = startsMember ? 'key' : 'value';
      return step(c);
    }
    state.lossy = true;
  }

  function push(text: string): string {
    if (ended) return '';
    raw += text;
    out = '';
    let i = 0;
    while (i < text.length) {
      if (mode === 'string' && !escape && unicode === null) {
        const special = quote === '"' ? SPECIAL_IN_DOUBLE : SPECIAL_IN_SINGLE;
        special.lastIndex = i;
        const found = special.exec(text);
        const stop = found ? found.index : text.length;
        if (stop > i) {
          out += text.slice(i, stop);
          i = stop;
          continue;
        }
      }
      step(text.charAt(i));
      i += 1;
    }
    return out;
  }

  function finishToken() {
    switch (mode) {
      case 'string':
        out += '"';
        if (inKey) out += ':null';
        return;
      case 'unquoted-key':
        out += '":null';
        return;
      case 'colon':
        out += ':null';
        return;
      case 'value':
        if (top() === '{') out += 'null';
        return;
      case 'number':
        return emitNumber();
      case 'word':
        return emitWord();
      default:
        return;
    }
  }

  function end(): string {
    if (ended) return '';
    ended = true;
    out = '';
    if (mode === 'before' || mode === 'fence') {
      const trimmed = raw.trim();
      if (trimmed === '' || trimmed === 'null') state.lossy = false;
      if (!state.lossy) return '{}';
      return `{"${RAW_ARGUMENTS_KEY}":${JSON.stringify(raw)}}`;
    }
    if (mode !== 'done') {
      state.lossy = true;
      finishToken();
      while (stack.length > 1) out += stack.pop() === '{' ? '}' : ']';
    }
    if (state.lossy) {
      out += `${topMembers > 0 ? ',' : ''}"${RAW_ARGUMENTS_KEY}":${JSON.stringify(raw)}`;
    }
    return `${out}}`;
  }

  return state;
}

/** Repairs a complete text at once; see {@link createJsonRepairStream}. */
export function repairJson(text: string): { json: string; lossy: boolean } {
  const stream = createJsonRepairStream();
  const json = stream.push(text) + stream.end();
  return { json, lossy: stream.lossy };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** True when `value` nests objects or arrays deeper than `max` levels (iterative; no recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ value: unknown; depth: number }> = [{ value, depth: 1 }];
  for (let item = stack.pop(); item; item = stack.pop()) {
    if (typeof item.value !== 'object' || item.value === null) continue;
    if (item.depth > max) return true;
    for (const child of Object.values(item.value)) {
      if (typeof child === 'object' && child !== null) {
        stack.push({ value: child, depth: item.depth + 1 });
      }
    }
  }
  return false;
}

/**
 * Turns an upstream tool call's `arguments` (normally a JSON string) into a tool_use `input`
 * object. Never throws; see the module comment for what a lossy repair returns.
 */
export function parseToolArguments(args: unknown): Record<string, unknown> {
  if (args === undefined || args === null) return {};
  if (isPlainObject(args) && !nestsDeeperThan(args, MAX_JSON_DEPTH)) return args;
  const text = typeof args === 'string' ? args : safeStringify(args);
  if (text.trim() === '') return {};
  try {
    let parsed: unknown = JSON.parse(text);
    // Some models encode the arguments twice: a JSON string holding the JSON object.
    if (typeof parsed === 'string' && parsed.trimStart().startsWith('{'))
      parsed = JSON.parse(parsed);
    if (isPlainObject(parsed) && !nestsDeeperThan(parsed, MAX_JSON_DEPTH)) return parsed;
  } catch {
    // not JSON as sent: repaired below
  }
  const { json } = repairJson(text);
  try {
    const repaired: unknown = JSON.parse(json);
    if (isPlainObject(repaired)) return repaired;
  } catch {
    // the repair always yields an object; this guard only keeps a bug from crashing a request
  }
  return { [RAW_ARGUMENTS_KEY]: text };
}

/** JSON text of a value, or `String(value)` when it cannot be serialised (too deep, cyclic). */
export function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return String(value);
  }
}
