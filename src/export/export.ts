/**
 * Exporting trained models to ONNX: for each model the denoiser graph and, for N ≤ unrolled_max_steps,
 * the unrolled N-step sampler graph, each parity-checked against tfjs (src/export/parity.ts) before it
 * is written; optionally a Triton model repository of the sampler tiers. Emits events; never prints.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ExportError, UsageError } from '../errors.js';
import type { OnEvent } from '../events.js';
import { createNetwork } from '../model/index.js';
import type { Network } from '../model/network.js';
import type { ParamSet } from '../model/params.js';
import { Rng } from '../rng.js';
import { ortAvailable } from '../onnx/runtime.js';
import type { Job } from '../stage.js';
import type { TrainedModel } from '../train.js';
import { loadInto, readState, type CheckpointMeta } from '../state.js';
import { IO, denoiserModel, exportInfo, samplerModel, type GraphKind } from './graphs.js';
import { ExportedModel } from './onnxfile.js';
import { assertParity, denoiserParity, onReferenceBackend, samplerParity, PARITY_TOLERANCE, type ParityResult } from './parity.js';
import { atomicWrite, tritonConfig, tritonModelName, writeTritonModel, type TritonOptions } from './triton.js';

/** A model to export: its network, weights and checkpoint metadata; `label` names it in files and messages. */
export interface ExportTarget {
  net: Network;
  params: ParamSet;
  meta: CheckpointMeta;
  label: string;
}

export interface ExportOptions {
  /** Folder for `<label>.denoiser.onnx` and `<label>.sampler.onnx`; null writes none (e.g. only Triton). */
  outDir: string | null;
  /** Write the unrolled sampler graph for models with at most this many steps. */
  unrolledMaxSteps: number;
  /** Also write a Triton model repository of the sampler graphs here. */
  triton?: { dir: string; options: TritonOptions } | null;
  tolerance?: number;
  onEvent?: OnEvent;
}

export interface ExportedGraph {
  label: string;
  kind: GraphKind;
  steps: number;
  /** The .onnx files written (in outDir and/or the Triton repository). */
  paths: string[];
  bytes: number;
  parity: ParityResult;
}

/** The default file name of a graph in an export folder. */
export function onnxFileName(label: string, kind: GraphKind): string {
  return `${label}.${kind}.onnx`;
}

/** Export each target; stops at the first parity failure (a ParityError), leaving that graph unwritten. */
export async function exportModels(targets: ExportTarget[], o: ExportOptions): Promise<ExportedGraph[]> {
  const emit = o.onEvent ?? (() => {});
  if (!Number.isInteger(o.unrolledMaxSteps) || o.unrolledMaxSteps < 0) throw new ExportError(`unrolled_max_steps must be an integer ≥ 0; got ${o.unrolledMaxSteps}`);
  if (o.outDir) mkdirSync(o.outDir, { recursive: true });
  const out: ExportedGraph[] = [];
  const t0 = performance.now();
  // the parity reference runs on tfjs's cpu backend (see onReferenceBackend); switch once for all
  await onReferenceBackend(() => exportEach(targets, o, emit, out));
  emit({ type: 'stage-end', stage: 'export', label: 'export', seconds: (performance.now() - t0) / 1000, summary: `${out.length} ONNX graphs` });
  return out;
}

function exportEach(targets: ExportTarget[], o: ExportOptions, emit: OnEvent, out: ExportedGraph[]): void {
  const tiers = new Map<string, string>();
  for (const t of targets) {
    const info = exportInfo(t.meta);
    const graphs: { kind: GraphKind; build: () => Uint8Array; parity: (m: ExportedModel) => ParityResult }[] = [
      { kind: 'denoiser', build: () => denoiserModel(t.net, t.params, info), parity: (m) => denoiserParity(m, t.net, t.params, info) },
    ];
    if (info.steps <= o.unrolledMaxSteps) {
      graphs.push({ kind: 'sampler', build: () => samplerModel(t.net, t.params, info, info.steps), parity: (m) => samplerParity(m, t.net, t.params, info, info.steps) });
    }
    for (const gr of graphs) {
      const bytes = gr.build();
      const what = `${t.label} ${gr.kind} graph`;
      const parity = gr.parity(new ExportedModel(what, bytes, { threads: 1 }));
      assertParity(parity, what, o.tolerance ?? PARITY_TOLERANCE);
      const paths: string[] = [];
      if (o.outDir) {
        const p = join(o.outDir, onnxFileName(t.label, gr.kind));
        atomicWrite(p, bytes);
        paths.push(p);
      }
      if (o.triton && gr.kind === 'sampler') {
        const name = tritonModelName(info.steps);
        if (tiers.has(name)) throw new ExportError(`triton: two models would both be "${name}" (${tiers.get(name)} and ${t.label}); export them to different repositories`);
        tiers.set(name, t.label);
        const dims = info.dataShape;
        const comment = `halfstep ${info.stage} (${t.label}): ${info.steps}-step DDIM sampler, unrolled; dataset ${info.dataset}, recipe ${info.recipeHash}`;
        const config = tritonConfig(name, IO.sampler.inputs.map((n) => ({ name: n, dims })), IO.sampler.outputs.map((n) => ({ name: n, dims })), o.triton.options, comment);
        paths.push(join(writeTritonModel(o.triton.dir, name, bytes, config), '1', 'model.onnx'));
      }
      out.push({ label: t.label, kind: gr.kind, steps: info.steps, paths, bytes: bytes.length, parity });
      emit({ type: 'info', message: `export ${what}: ${paths.join(', ') || '(parity only)'} (parity: max |onnxruntime − tfjs| ${parity.maxAbs.toExponential(2)})` });
    }
  }
}

/**
 * The recipe's `export` section at the end of `run`: every student into <run>/onnx. Where
 * onnxruntime-node cannot be loaded (the GPU bundle ships without it) the export is skipped with a
 * note instead of failing a finished run; `halfstep export RUN --out DIR` does it later elsewhere.
 */
export async function exportAfterRun(job: Job, students: TrainedModel[]): Promise<ExportedGraph[]> {
  const ex = job.recipe.export;
  if (!ex.onnx) return [];
  if (!ortAvailable()) {
    job.onEvent({ type: 'info', message: `export.onnx: skipped, onnxruntime-node cannot be loaded here; export later with \`halfstep export ${job.run.root} --out ${job.run.onnx}\`` });
    return [];
  }
  return exportModels(students.map((s) => exportTarget(job.net, s)), { outDir: job.run.onnx, unrolledMaxSteps: ex.unrolled_max_steps, onEvent: job.onEvent });
}

/** A trained model as an export target, labelled "teacher" or "student-N". */
export function exportTarget(net: Network, m: { params: ParamSet; meta: CheckpointMeta }): ExportTarget {
  return { net, params: m.params, meta: m.meta, label: m.meta.stage === 'teacher' ? 'teacher' : `student-${m.meta.steps}` };
}

/** A model checkpoint loaded for export: the network its recipe describes, with the weights to sample with. */
export function loadForExport(path: string): ExportTarget {
  const { meta, tensors } = readState(path);
  const net = createNetwork(meta.recipe.model, meta.dataset.shape);
  const params = net.init(new Rng(0));
  loadInto(params, meta.stage === 'teacher' ? 'ema' : 'params', tensors, path);
  return exportTarget(net, { params, meta });
}

/**
 * The checkpoints `halfstep export` takes from a path: a checkpoint file itself, or every
 * checkpoints/student-N.ckpt of a run folder (largest N first); `steps` picks one N.
 */
export function checkpointsToExport(path: string, steps?: number): string[] {
  if (!existsSync(path)) throw new UsageError(`${path}: no such run folder or checkpoint`);
  if (!statSync(path).isDirectory()) return [path];
  const dir = join(path, 'checkpoints');
  const found = existsSync(dir)
    ? readdirSync(dir)
        .map((f) => /^student-(\d+)\.ckpt$/.exec(f))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => ({ steps: Number(m[1]), path: join(dir, m[0]) }))
        .sort((a, b) => b.steps - a.steps)
    : [];
  if (found.length === 0) throw new UsageError(`${path}: no student checkpoints (checkpoints/student-N.ckpt); distill first, or pass a checkpoint file`);
  if (steps === undefined) return found.map((f) => f.path);
  const one = found.find((f) => f.steps === steps);
  if (!one) throw new UsageError(`${path}: no ${steps}-step student; it has ${found.map((f) => f.steps).join(', ')}`);
  return [one.path];
}
