/**
 * Reads and checks a GGUF file's header in JavaScript before the native loader sees the file:
 * magic, version, counts, every string and array length, and every tensor's type, shape and
 * place inside the file. A truncated, corrupted or hostile file ends here with a GgufError
 * that says what is wrong, instead of in llama.cpp.
 */
import { open, type FileHandle } from 'node:fs/promises';

export class GgufError extends Error {
  override name = 'GgufError';
}

export interface GgufInfo {
  version: number;
  fileSize: number;
  tensorCount: number;
  metadataCount: number;
  /** `general.architecture`, e.g. `llama`. */
  architecture: string | null;
  /** `general.name`, when the file has one. */
  name: string | null;
  /** `<architecture>.context_length`: the context the model was trained for. */
  contextLength: number | null;
  /** `general.file_type` (the quantization), as llama.cpp numbers it. */
  fileType: number | null;
  hasChatTemplate: boolean;
  /** Sum of all tensor elements. */
  parameterCount: number;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const MAX_TENSORS = 1_000_000;
const MAX_METADATA = 1_000_000;
const MAX_STRING = 16 * 1024 * 1024;
const MAX_ARRAY = 64 * 1024 * 1024;
const MAX_HEADER = 1024 * 1024 * 1024;
const MAX_DIMS = 4;

/** Bytes per value of each metadata scalar type; 8 (string) and 9 (array) are read apart. */
const SCALAR_SIZES: Record<number, number> = {
  0: 1, // u8
  1: 1, // i8
  2: 2, // u16
  3: 2, // i16
  4: 4, // u32
  5: 4, // i32
  6: 4, // f32
  7: 1, // bool
  10: 8, // u64
  11: 8, // i64
  12: 8, // f64
};
const STRING = 8;
const ARRAY = 9;

/** GGML tensor types llama.cpp knows: [elements per block, bytes per block]. */
const TENSOR_TYPES: Record<number, [number, number]> = {
  0: [1, 4], // F32
  1: [1, 2], // F16
  2: [32, 18], // Q4_0
  3: [32, 20], // Q4_1
  6: [32, 22], // Q5_0
  7: [32, 24], // Q5_1
  8: [32, 34], // Q8_0
  9: [32, 36], // Q8_1
  10: [256, 84], // Q2_K
  11: [256, 110], // Q3_K
  12: [256, 144], // Q4_K
  13: [256, 176], // Q5_K
  14: [256, 210], // Q6_K
  15: [256, 292], // Q8_K
  16: [256, 66], // IQ2_XXS
  17: [256, 74], // IQ2_XS
  18: [256, 98], // IQ3_XXS
  19: [256, 50], // IQ1_S
  20: [32, 18], // IQ4_NL
  21: [256, 110], // IQ3_S
  22: [256, 82], // IQ2_S
  23: [256, 136], // IQ4_XS
  24: [1, 1], // I8
  25: [1, 2], // I16
  26: [1, 4], // I32
  27: [1, 8], // I64
  28: [1, 8], // F64
  29: [256, 56], // IQ1_M
  30: [1, 2], // BF16
  34: [256, 54], // TQ1_0
  35: [256, 66], // TQ2_0
  39: [32, 17], // MXFP4
};

/** Reads a file front to back through a buffer, refusing to go past its end. */
class Reader {
  private buffer = Buffer.alloc(0);
  private bufferStart = 0;
  position = 0;

  constructor(
    private readonly file: FileHandle,
    readonly size: number,
  ) {}

  private async need(bytes: number): Promise<Buffer> {
    if (this.position + bytes > this.size) {
      throw new GgufError(
        `the file ends inside its header (at byte ${this.position}): it is truncated`,
      );
    }
    const end = this.bufferStart + this.buffer.length;
    if (this.position < this.bufferStart || this.position + bytes > end) {
      const length = Math.min(Math.max(bytes, 1024 * 1024), this.size - this.position);
      const chunk = Buffer.alloc(length);
      const { bytesRead } = await this.file.read(chunk, 0, length, this.position);
      if (bytesRead < bytes)
        throw new GgufError('the file could not be read to the end of its header');
      this.buffer = chunk.subarray(0, bytesRead);
      this.bufferStart = this.position;
    }
    const offset = this.position - this.bufferStart;
    this.position += bytes;
    return this.buffer.subarray(offset, offset + bytes);
  }

  async u32(): Promise<number> {
    return (await this.need(4)).readUInt32LE(0);
  }

  /** A u64 that must fit a JavaScript number and stay under `max`. */
  async count(what: string, max: number): Promise<number> {
    const value = (await this.need(8)).readBigUInt64LE(0);
    if (value > BigInt(max))
      throw new GgufError(`${what} is ${value}, more than the ${max} allowed`);
    return Number(value);
  }

  async string(what: string): Promise<string> {
    const length = await this.count(`the length of ${what}`, MAX_STRING);
    return (await this.need(length)).toString('utf8');
  }

  async skip(bytes: number): Promise<void> {
    if (this.position + bytes > this.size) {
      throw new GgufError(
        `the file ends inside its header (at byte ${this.position}): it is truncated`,
      );
    }
    this.position += bytes;
  }

  async scalar(type: number): Promise<number | bigint | boolean> {
    const bytes = await this.need(SCALAR_SIZES[type] as number);
    switch (type) {
      case 0:
        return bytes.readUInt8(0);
      case 1:
        return bytes.readInt8(0);
      case 2:
        return bytes.readUInt16LE(0);
      case 3:
        return bytes.readInt16LE(0);
      case 4:
        return bytes.readUInt32LE(0);
      case 5:
        return bytes.readInt32LE(0);
      case 6:
        return bytes.readFloatLE(0);
      case 7:
        return bytes.readUInt8(0) !== 0;
      case 10:
        return bytes.readBigUInt64LE(0);
      case 11:
        return bytes.readBigInt64LE(0);
      default:
        return bytes.readDoubleLE(0);
    }
  }
}

type MetadataValue = string | number | bigint | boolean | undefined;

/**
 * Checks the GGUF file at `path` and returns what its header says. Throws GgufError when the
 * file is not a GGUF model llama.cpp could load safely.
 */
export async function readGgufHeader(path: string): Promise<GgufInfo> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    if (size < 24) throw new GgufError(`the file is ${size} bytes: too small to be a GGUF model`);
    const reader = new Reader(file, size);
    if ((await reader.u32()) !== MAGIC) {
      throw new GgufError('the file does not start with "GGUF": it is not a GGUF model');
    }
    const version = await reader.u32();
    if (version !== 2 && version !== 3) {
      throw new GgufError(`GGUF version ${version} is not supported (2 and 3 are)`);
    }
    const tensorCount = await reader.count('the tensor count', MAX_TENSORS);
    const metadataCount = await reader.count('the metadata count', MAX_METADATA);

    const metadata = new Map<string, MetadataValue>();
    for (let i = 0; i < metadataCount; i++) {
      const key = await reader.string(`metadata key ${i}`);
      const type = await reader.u32();
      metadata.set(key, await readValue(reader, key, type));
    }

    const alignment = Number(metadata.get('general.alignment') ?? 32);
    if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      throw new GgufError(`general.alignment is ${alignment}: it must be a power of two`);
    }

    const tensors: Array<{ name: string; offset: number; bytes: number }> = [];
    let parameterCount = 0;
    for (let i = 0; i < tensorCount; i++) {
      const name = await reader.string(`the name of tensor ${i}`);
      const dimCount = await reader.u32();
      if (dimCount < 1 || dimCount > MAX_DIMS) {
        throw new GgufError(
          `tensor "${name}" has ${dimCount} dimensions (1 to ${MAX_DIMS} allowed)`,
        );
      }
      let elements = 1;
      const dims: number[] = [];
      for (let d = 0; d < dimCount; d++) {
        const dim = await reader.count(`a dimension of tensor "${name}"`, size);
        if (dim === 0) throw new GgufError(`tensor "${name}" has a dimension of 0`);
        dims.push(dim);
        elements *= dim;
      }
      const type = await reader.u32();
      const layout = TENSOR_TYPES[type];
      if (!layout) throw new GgufError(`tensor "${name}" has type ${type}, which is not known`);
      const [blockElements, blockBytes] = layout;
      if ((dims[0] as number) % blockElements !== 0) {
        throw new GgufError(
          `tensor "${name}": its first dimension ${dims[0]} is not a multiple of its block size ${blockElements}`,
        );
      }
      const bytes = (elements / blockElements) * blockBytes;
      const offset = await reader.count(`the offset of tensor "${name}"`, size);
      if (offset % alignment !== 0) {
        throw new GgufError(`tensor "${name}" is not aligned to ${alignment} bytes`);
      }
      tensors.push({ name, offset, bytes });
      parameterCount += elements;
    }

    if (reader.position > MAX_HEADER) throw new GgufError('the header is larger than 1 GB');
    const dataStart = Math.ceil(reader.position / alignment) * alignment;
    for (const tensor of tensors) {
      if (dataStart + tensor.offset + tensor.bytes > size) {
        throw new GgufError(
          `tensor "${tensor.name}" reaches past the end of the file (${size} bytes): the file is truncated or corrupted`,
        );
      }
    }

    const architecture = text(metadata.get('general.architecture'));
    if (architecture) checkHyperparameters(metadata, architecture);
    const context = architecture ? metadata.get(`${architecture}.context_length`) : undefined;
    const fileType = metadata.get('general.file_type');
    return {
      version,
      fileSize: size,
      tensorCount,
      metadataCount,
      architecture,
      name: text(metadata.get('general.name')),
      contextLength:
        typeof context === 'number' || typeof context === 'bigint' ? Number(context) : null,
      fileType: typeof fileType === 'number' ? fileType : null,
      hasChatTemplate: typeof metadata.get('tokenizer.chat_template') === 'string',
      parameterCount,
    };
  } finally {
    await file.close();
  }
}

/**
 * Sizes llama.cpp divides by or builds tensors from: a zero there aborts the process inside
 * the loader instead of failing the load. Per-layer arrays (some hybrids) are not checked.
 */
const POSITIVE_HYPERPARAMETERS = [
  'block_count',
  'embedding_length',
  'attention.head_count',
  'context_length',
];

function checkHyperparameters(metadata: Map<string, MetadataValue>, architecture: string): void {
  for (const key of POSITIVE_HYPERPARAMETERS) {
    const value = metadata.get(`${architecture}.${key}`);
    if (value === undefined || typeof value === 'string') continue;
    const number = Number(value);
    if (!(number >= 1)) {
      throw new GgufError(`${architecture}.${key} is ${String(value)}: it must be at least 1`);
    }
  }
}

function text(value: MetadataValue): string | null {
  return typeof value === 'string' ? value : null;
}

/** Reads one metadata value; arrays are checked and skipped (only scalars and strings are kept). */
async function readValue(reader: Reader, key: string, type: number): Promise<MetadataValue> {
  if (type === STRING) return reader.string(`metadata "${key}"`);
  if (type in SCALAR_SIZES) return reader.scalar(type);
  if (type !== ARRAY) throw new GgufError(`metadata "${key}" has type ${type}, which is not known`);
  const itemType = await reader.u32();
  const length = await reader.count(`the length of metadata array "${key}"`, MAX_ARRAY);
  if (itemType === STRING) {
    for (let i = 0; i < length; i++) {
      const itemLength = await reader.count(`an item length in "${key}"`, MAX_STRING);
      await reader.skip(itemLength);
    }
  } else if (itemType in SCALAR_SIZES) {
    await reader.skip(length * (SCALAR_SIZES[itemType] as number));
  } else {
    throw new GgufError(`metadata array "${key}" holds type ${itemType}, which is not allowed`);
  }
  return undefined;
}
