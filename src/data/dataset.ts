/**
 * Datasets are Arrow IPC files: one row per example with a fixed-size list `x` (float32, or uint8
 * mapped linearly onto the value range), an optional int32 `label`, and a uint8 `split`
 * (0 = train, 1 = held out). Schema metadata records shape, value range, name and source.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  Field,
  FixedSizeList,
  Float32,
  Int32,
  Schema,
  Table,
  Uint8,
  makeData,
  type Data,
  type DataType,
  RecordBatch,
  Struct,
  tableFromIPC,
  tableToIPC,
} from 'apache-arrow';
import { DatasetError } from '../errors.js';
import { Rng } from '../rng.js';

export const DATASET_FORMAT = 'halfstep-dataset/1';

export interface Dataset {
  name: string;
  source: string;
  /** Shape of one example, e.g. [2] or [28, 28, 1]. */
  shape: number[];
  /** Value range of the data in training units (used to clip x̂ when sampling). */
  range: [number, number];
  /** Examples, row-major, in training units. */
  x: Float32Array;
  labels: Int32Array | null;
  /** 0 = train, 1 = held out, per example. */
  split: Uint8Array;
  numClasses: number | null;
}

export function exampleSize(d: Pick<Dataset, 'shape'>): number {
  return d.shape.reduce((a, b) => a * b, 1);
}

export function count(d: Dataset): number {
  return d.split.length;
}

/** The examples of one split as a new dataset-shaped view (copy). */
export function splitOf(d: Dataset, which: 'train' | 'heldout'): { x: Float32Array; labels: Int32Array | null; n: number } {
  const want = which === 'train' ? 0 : 1;
  const D = exampleSize(d);
  const idx: number[] = [];
  for (let i = 0; i < d.split.length; i++) if (d.split[i] === want) idx.push(i);
  const x = new Float32Array(idx.length * D);
  const labels = d.labels ? new Int32Array(idx.length) : null;
  idx.forEach((src, j) => {
    x.set(d.x.subarray(src * D, (src + 1) * D), j * D);
    if (labels) labels[j] = d.labels![src]!;
  });
  return { x, labels, n: idx.length };
}

/** Assign a held-out split: a random `fraction` of the examples (deterministic given the seed). */
export function randomSplit(n: number, fraction: number, seed: number): Uint8Array {
  const split = new Uint8Array(n);
  const perm = new Rng(seed ^ 0x5eed).permutation(n);
  const k = Math.max(1, Math.round(n * fraction));
  for (let i = 0; i < k; i++) split[perm[i]!] = 1;
  return split;
}

/** Write a dataset as Arrow IPC, atomically. `storeAs: 'uint8'` quantises values of the range onto 0..255. */
export function writeDataset(path: string, d: Dataset, storeAs: 'float32' | 'uint8' = 'float32'): void {
  const n = count(d);
  const D = exampleSize(d);
  const [lo, hi] = d.range;
  let values: Float32Array | Uint8Array = d.x;
  if (storeAs === 'uint8') {
    const q = new Uint8Array(d.x.length);
    for (let i = 0; i < q.length; i++) q[i] = Math.max(0, Math.min(255, Math.round(((d.x[i]! - lo) / (hi - lo)) * 255)));
    values = q;
  }
  const itemType: DataType = storeAs === 'uint8' ? new Uint8() : new Float32();
  const listType = new FixedSizeList(D, new Field('item', itemType, false));
  const fields: Field[] = [new Field('x', listType, false), new Field('split', new Uint8(), false)];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const mk = makeData as (props: any) => Data;
  const children: Data[] = [
    mk({ type: listType, length: n, nullCount: 0, child: mk({ type: itemType, length: n * D, data: values }) }),
    mk({ type: new Uint8(), length: n, data: d.split }),
  ];
  if (d.labels) {
    fields.push(new Field('label', new Int32(), false));
    children.push(mk({ type: new Int32(), length: n, data: d.labels }));
  }
  const meta = new Map<string, string>([
    ['halfstep.format', DATASET_FORMAT],
    ['halfstep.name', d.name],
    ['halfstep.source', d.source],
    ['halfstep.shape', JSON.stringify(d.shape)],
    ['halfstep.range', JSON.stringify(d.range)],
    ['halfstep.stored_as', storeAs],
    ['halfstep.num_classes', JSON.stringify(d.numClasses)],
  ]);
  const schema = new Schema(fields, meta);
  const struct = mk({ type: new Struct(fields), length: n, nullCount: 0, children });
  const table = new Table([new RecordBatch(schema, struct as Data<Struct>)]);
  const bytes = tableToIPC(table, 'file');
  mkdirSync(dirname(path) || '.', { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/** Read a dataset written by writeDataset (or any Arrow IPC file that follows the same layout). */
export function readDataset(path: string): Dataset {
  if (!existsSync(path)) throw new DatasetError(`${path}: dataset file not found`);
  let table: Table;
  try {
    table = tableFromIPC(readFileSync(path));
  } catch (e) {
    throw new DatasetError(`${path}: not an Arrow IPC file (${(e as Error).message})`);
  }
  if (table.schema.fields.length === 0) throw new DatasetError(`${path}: not an Arrow IPC file (no columns could be read)`);
  const meta = table.schema.metadata;
  const need = (k: string): string => {
    const v = meta.get(k);
    if (v === undefined) throw new DatasetError(`${path}: schema metadata lacks "${k}"; is this a halfstep dataset? (make one with \`halfstep data make\` or \`halfstep data import\`)`);
    return v;
  };
  const shape = JSON.parse(need('halfstep.shape')) as number[];
  const range = JSON.parse(need('halfstep.range')) as [number, number];
  const storedAs = meta.get('halfstep.stored_as') ?? 'float32';
  const D = shape.reduce((a, b) => a * b, 1);
  const n = table.numRows;
  const xcol = table.getChild('x');
  const scol = table.getChild('split');
  if (!xcol) throw new DatasetError(`${path}: no column "x"`);
  if (!scol) throw new DatasetError(`${path}: no column "split"`);
  const x = new Float32Array(n * D);
  let off = 0;
  for (const chunk of xcol.data) {
    const child = chunk.children[0]!;
    const vals = (child.values as Float32Array | Uint8Array).subarray(child.offset + chunk.offset * D, child.offset + (chunk.offset + chunk.length) * D);
    if (vals.length !== chunk.length * D) throw new DatasetError(`${path}: column x has ${vals.length / chunk.length} values per row; metadata shape says ${D}`);
    if (storedAs === 'uint8') {
      const [lo, hi] = range;
      for (let i = 0; i < vals.length; i++) x[off + i] = lo + ((vals[i]! / 255) * (hi - lo));
    } else x.set(vals, off);
    off += vals.length;
  }
  const split = Uint8Array.from(scol.toArray() as Uint8Array);
  const lcol = table.getChild('label');
  const labels = lcol ? Int32Array.from(lcol.toArray() as Int32Array) : null;
  const nc = meta.get('halfstep.num_classes');
  return {
    name: meta.get('halfstep.name') ?? path,
    source: meta.get('halfstep.source') ?? 'unknown',
    shape,
    range,
    x,
    labels,
    split,
    numClasses: nc ? (JSON.parse(nc) as number | null) : null,
  };
}
