/**
 * Checkpoints: one binary file holding named float32 tensors and a JSON header (the resolved recipe,
 * stage, round, step, RNG state, …), written atomically (temp file, fsync, rename) so that a crash
 * never leaves a half-written checkpoint in place of a good one.
 *
 * Layout: "HALFSTEP" | u32 version | u32 header bytes | header JSON | tensor data (f32 LE) | u32 CRC-32 of all before.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { CheckpointError } from './errors.js';

const MAGIC = Buffer.from('HALFSTEP', 'ascii');
export const CHECKPOINT_VERSION = 1;

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}

interface TensorEntry {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

export interface Checkpoint<M> {
  meta: M;
  tensors: Map<string, NamedTensor>;
}

export function saveCheckpoint<M>(path: string, meta: M, tensors: Map<string, NamedTensor>): void {
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.data.length) throw new Error(`tensor ${name}: shape [${t.shape}] has ${size} values, data has ${t.data.length}`);
    entries.push({ name, shape: t.shape, offset, length: t.data.length });
    offset += t.data.length * 4;
  }
  const header = Buffer.from(JSON.stringify({ meta, tensors: entries }), 'utf8');
  const pre = Buffer.alloc(16);
  MAGIC.copy(pre, 0);
  pre.writeUInt32LE(CHECKPOINT_VERSION, 8);
  pre.writeUInt32LE(header.length, 12);
  const body = Buffer.alloc(offset);
  for (const e of entries) {
    const t = tensors.get(e.name)!;
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(body, e.offset);
  }
  let crc = crc32(pre);
  crc = crc32(header, crc);
  crc = crc32(body, crc);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(crc >>> 0, 0);

  mkdirSync(dirname(path) || '.', { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const b of [pre, header, body, tail]) writeSync(fd, b);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

export function loadCheckpoint<M>(path: string): Checkpoint<M> {
  if (!existsSync(path)) throw new CheckpointError(`${path}: checkpoint not found`);
  const buf = readFileSync(path);
  if (buf.length < 20 || !buf.subarray(0, 8).equals(MAGIC)) {
    throw new CheckpointError(`${path}: not a halfstep checkpoint (the file does not start with the halfstep signature)`);
  }
  const version = buf.readUInt32LE(8);
  if (version !== CHECKPOINT_VERSION) throw new CheckpointError(`${path}: checkpoint format version ${version}; this halfstep reads version ${CHECKPOINT_VERSION}`);
  const hlen = buf.readUInt32LE(12);
  if (16 + hlen + 4 > buf.length) throw new CheckpointError(`${path}: truncated checkpoint (${buf.length} bytes; the header alone needs ${16 + hlen + 4})`);
  let parsed: { meta: M; tensors: TensorEntry[] };
  try {
    parsed = JSON.parse(buf.subarray(16, 16 + hlen).toString('utf8'));
  } catch {
    throw new CheckpointError(`${path}: corrupt checkpoint header`);
  }
  const dataStart = 16 + hlen;
  const dataBytes = parsed.tensors.reduce((n, e) => n + e.length * 4, 0);
  const expected = dataStart + dataBytes + 4;
  if (buf.length !== expected) {
    throw new CheckpointError(`${path}: truncated or padded checkpoint (${buf.length} bytes, expected ${expected}); it was not completely written`);
  }
  const stored = buf.readUInt32LE(buf.length - 4);
  if ((crc32(buf.subarray(0, buf.length - 4)) >>> 0) !== stored) throw new CheckpointError(`${path}: checkpoint is corrupt (checksum mismatch)`);
  const tensors = new Map<string, NamedTensor>();
  const aligned = new Uint8Array(dataBytes);
  aligned.set(buf.subarray(dataStart, dataStart + dataBytes));
  for (const e of parsed.tensors) {
    tensors.set(e.name, { shape: e.shape, data: new Float32Array(aligned.buffer, e.offset, e.length) });
  }
  return { meta: parsed.meta, tensors };
}

export function removeIfExists(path: string): void {
  if (existsSync(path)) unlinkSync(path);
}
