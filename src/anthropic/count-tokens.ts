import type { ContentBlock, CountTokensRequest } from './types.js';

/**
 * The figures behind {@link estimateTokens}. About four bytes of UTF-8 make a token for
 * English text and code with the tokenizers of current local models (CJK text, at three
 * bytes a character, comes out a little low). Images cost what Anthropic documents for a
 * full-size image (about 1,600 tokens), an upper bound for local vision models.
 */
export const TOKEN_ESTIMATE = {
  bytesPerToken: 4,
  /** Role markers and separators a chat template adds per message. */
  perMessage: 4,
  /** Tool-definition framing a chat template adds per tool. */
  perTool: 8,
  perImage: 1600,
  /** The assistant turn's opening that every prompt ends with. */
  perRequest: 3,
} as const;

function blockBytes(block: ContentBlock): { bytes: number; images: number } {
  switch (block.type) {
    case 'text':
      return { bytes: Buffer.byteLength(block.text), images: 0 };
    case 'image':
      return { bytes: 0, images: 1 };
    case 'tool_use':
      return { bytes: Buffer.byteLength(block.name + JSON.stringify(block.input)), images: 0 };
    case 'tool_result': {
      const content = block.content ?? '';
      if (typeof content === 'string') return { bytes: Buffer.byteLength(content), images: 0 };
      let bytes = 0;
      let images = 0;
      for (const part of content) {
        if (part.type === 'text') bytes += Buffer.byteLength(part.text);
        else images += 1;
      }
      return { bytes, images };
    }
    default:
      // thinking blocks from earlier turns are not sent to the model
      return { bytes: 0, images: 0 };
  }
}

/**
 * Estimates the prompt tokens of a request as sent upstream: ceil(bytes / 4) over the text of
 * the system prompt, messages, tool inputs and results, and tool definitions (name,
 * description, JSON schema), plus fixed costs per message, tool and image. Thinking blocks
 * are dropped before forwarding and count nothing. Used when the upstream has no tokenizer
 * endpoint.
 */
export function estimateTokens(req: CountTokensRequest): number {
  const e = TOKEN_ESTIMATE;
  let bytes = 0;
  let images = 0;
  let overhead = e.perRequest;
  const system = req.system;
  if (system !== undefined) {
    overhead += e.perMessage;
    if (typeof system === 'string') bytes += Buffer.byteLength(system);
    else for (const block of system) bytes += Buffer.byteLength(block.text);
  }
  for (const message of req.messages) {
    overhead += e.perMessage;
    if (typeof message.content === 'string') {
      bytes += Buffer.byteLength(message.content);
      continue;
    }
    for (const block of message.content) {
      const counted = blockBytes(block);
      bytes += counted.bytes;
      images += counted.images;
      if (block.type === 'tool_result') overhead += e.perMessage;
    }
  }
  for (const tool of req.tools ?? []) {
    overhead += e.perTool;
    bytes += Buffer.byteLength(
      tool.name + (tool.description ?? '') + JSON.stringify(tool.input_schema),
    );
  }
  return Math.ceil(bytes / e.bytesPerToken) + images * e.perImage + overhead;
}
