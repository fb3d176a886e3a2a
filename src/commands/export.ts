/** `halfstep export RUN_OR_CHECKPOINT`: ONNX graphs of the students (parity-checked), optionally as a Triton model repository. */
import { Option, type Command } from 'commander';
import { initBackend } from '../backend.js';
import { UsageError } from '../errors.js';
import { checkpointsToExport, exportModels, loadForExport } from '../export/export.js';
import { TRITON_DEFAULTS, TRITON_DEVICES, TRT_PRECISIONS, type TritonDevice, type TrtPrecision } from '../export/triton.js';
import type { BackendName } from '../recipe.js';
import { backendOption, type CliContext } from './common.js';

interface ExportOptions {
  steps?: number;
  out?: string;
  triton?: string;
  tensorrt?: TrtPrecision;
  maxBatchSize: number;
  instances: number;
  device: TritonDevice;
  unrolledMaxSteps?: number;
  backend?: BackendName;
}

function intArg(flag: string, min: number) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} expects an integer ≥ ${min}; got "${v}"`);
    return n;
  };
}

export function registerExportCommand(program: Command, ctx: CliContext): void {
  program
    .command('export')
    .argument('<run-or-checkpoint>', 'a run folder (exports every checkpoints/student-N.ckpt) or one checkpoint file')
    .description('write ONNX graphs (denoiser, and the unrolled sampler for few steps), each checked against tfjs; optionally a Triton model repository')
    .addOption(new Option('--steps <n>', 'export only the student with this many steps').argParser(intArg('--steps', 1)))
    .option('-o, --out <dir>', 'folder for <label>.denoiser.onnx and <label>.sampler.onnx')
    .option('--triton <dir>', 'write a Triton model repository here: <dir>/sampler_<N>step/{config.pbtxt,1/model.onnx}')
    .addOption(new Option('--tensorrt [precision]', 'Triton: run through the TensorRT execution provider').choices([...TRT_PRECISIONS]).preset('fp16'))
    .addOption(new Option('--max-batch-size <n>', 'Triton: max_batch_size (dynamic batching)').argParser(intArg('--max-batch-size', 1)).default(TRITON_DEFAULTS.maxBatchSize))
    .addOption(new Option('--instances <n>', 'Triton: model instances per GPU (or on the CPU)').argParser(intArg('--instances', 1)).default(TRITON_DEFAULTS.instances))
    .addOption(new Option('--device <kind>', 'Triton: instance kind').choices([...TRITON_DEVICES]).default(TRITON_DEFAULTS.device))
    .addOption(new Option('--unrolled-max-steps <n>', "write the unrolled sampler for models of at most this many steps (default: the recipe's export.unrolled_max_steps)").argParser(intArg('--unrolled-max-steps', 0)))
    .addOption(backendOption().default('cpu'))
    .action(async (source: string, o: ExportOptions) => {
      if (!o.out && !o.triton) throw new UsageError('nothing to write: give --out DIR, --triton DIR, or both');
      if (o.tensorrt && !o.triton) throw new UsageError('--tensorrt configures the Triton repository; give --triton DIR too');
      if (o.tensorrt && o.device !== 'gpu') throw new UsageError('--tensorrt needs GPU instances (--device gpu)');
      const paths = checkpointsToExport(source, o.steps);
      await initBackend(o.backend ?? 'cpu');
      const targets = paths.map(loadForExport);
      if (o.steps !== undefined && targets[0]!.meta.steps !== o.steps) throw new UsageError(`${source} is a ${targets[0]!.meta.steps}-step model; --steps asked for ${o.steps}`);
      const recipeMax = (targets[0]!.meta.recipe as { export?: { unrolled_max_steps?: number } }).export?.unrolled_max_steps;
      const graphs = await exportModels(targets, {
        outDir: o.out ?? null,
        unrolledMaxSteps: o.unrolledMaxSteps ?? recipeMax ?? 8,
        triton: o.triton ? { dir: o.triton, options: { ...TRITON_DEFAULTS, maxBatchSize: o.maxBatchSize, instances: o.instances, device: o.device, tensorrt: o.tensorrt ?? null } } : null,
      });
      const rows = graphs.map((g) => `${g.label.padEnd(12)} ${g.kind.padEnd(8)} max |onnxruntime − tfjs| ${g.parity.maxAbs.toExponential(2)}  ${g.paths.join('  ')}`);
      ctx.io.out(`${rows.join('\n')}\n`);
      if (o.triton) ctx.io.out(`triton model repository: ${o.triton} (see docs/triton.md)\n`);
    });
}
