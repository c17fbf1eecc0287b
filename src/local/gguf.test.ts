import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { tinyGguf } from '../../test/fixtures/gguf.js';
import { GgufError, readGgufHeader } from './gguf.js';

const dir = mkdtempSync(join(tmpdir(), 'palisade-gguf-'));
let count = 0;
function fileOf(bytes: Buffer): string {
  const path = join(dir, `m${count++}.gguf`);
  writeFileSync(path, bytes);
  return path;
}

const model = tinyGguf();

async function refused(bytes: Buffer, message: RegExp) {
  await assert.rejects(readGgufHeader(fileOf(bytes)), (error: unknown) => {
    assert.ok(error instanceof GgufError, `expected a GgufError, got ${String(error)}`);
    assert.match(error.message, message);
    return true;
  });
}

test('the tiny model reads back what was written', async () => {
  const info = await readGgufHeader(fileOf(model));
  assert.equal(info.version, 3);
  assert.equal(info.architecture, 'llama');
  assert.equal(info.name, 'palisade-tiny');
  assert.equal(info.contextLength, 512);
  assert.equal(info.tensorCount, 3 + 2 * 9);
  assert.equal(info.fileSize, model.length);
  assert.equal(info.hasChatTemplate, true);
  assert.ok(info.parameterCount > 100_000);
});

test('a file that is not GGUF is refused by its magic', async () => {
  await refused(Buffer.from('<html><body>Not found</body></html>'.repeat(4)), /not a GGUF model/);
  await refused(Buffer.alloc(10), /too small/);
});

test('an unknown version is refused', async () => {
  const bytes = Buffer.from(model);
  bytes.writeUInt32LE(99, 4);
  await refused(bytes, /version 99 is not supported/);
});

test('absurd counts and lengths are refused before anything is allocated', async () => {
  const tensors = Buffer.from(model);
  tensors.writeBigUInt64LE(2n ** 62n, 8);
  await refused(tensors, /tensor count .* more than/);

  const metadata = Buffer.from(model);
  metadata.writeBigUInt64LE(2n ** 40n, 16);
  await refused(metadata, /metadata count .* more than/);

  const key = Buffer.from(model);
  key.writeBigUInt64LE(2n ** 50n, 24);
  await refused(key, /length of metadata key 0 .* more than/);
});

test('a truncated file is refused, whether cut in the header or in the weights', async () => {
  await refused(model.subarray(0, 2000), /truncated/);
  await refused(model.subarray(0, model.length - 100), /past the end of the file/);
});

test('an unknown tensor type and a bad dimension count are refused', async () => {
  // The first tensor's name follows the metadata; find it and corrupt what comes after it.
  const name = Buffer.from('token_embd.weight');
  const at = model.indexOf(name) + name.length;
  const dims = Buffer.from(model);
  dims.writeUInt32LE(9, at);
  await refused(dims, /9 dimensions/);

  const type = Buffer.from(model);
  type.writeUInt32LE(77, at + 4 + 2 * 8);
  await refused(type, /type 77, which is not known/);
});

test('a random file of the right size with the magic is refused, not loaded', async () => {
  const bytes = Buffer.alloc(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251;
  bytes.write('GGUF', 0, 'ascii');
  bytes.writeUInt32LE(3, 4);
  await assert.rejects(readGgufHeader(fileOf(bytes)), GgufError);
});

test('a zero where llama.cpp divides or sizes tensors is refused (it would abort the process)', async () => {
  const zeroHeads = tinyGguf({ heads: 4 });
  const key = Buffer.from('llama.attention.head_count');
  // The u32 value follows the key and its u32 type.
  const at = zeroHeads.indexOf(key) + key.length + 4;
  assert.equal(zeroHeads.readUInt32LE(at), 4);
  zeroHeads.writeUInt32LE(0, at);
  await refused(zeroHeads, /llama\.attention\.head_count is 0: it must be at least 1/);
});
