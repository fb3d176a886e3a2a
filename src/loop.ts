/**
 * The optimisation loop shared by teacher training and distillation. It reads top to bottom:
 * make a batch → gradients → check the loss is finite → clip → Adam → EMA → events → checkpoint.
 * Ctrl-C (an aborted signal) saves the state and throws InterruptedError; a NaN/Inf loss throws
 * NonFiniteLossError before anything is written, so the last good checkpoint stays intact.
 */
import { tf } from './tf.js';
import { InterruptedError, NonFiniteLossError } from './errors.js';
import type { OnEvent, Stage } from './events.js';
import { Adam, emaDecay, learningRate, type Decay } from './optim.js';
import type { ParamSet } from './model/params.js';
import type { Rng, RngState } from './rng.js';

export interface OptimConfig {
  lr: number;
  warmup: number;
  decay: Decay;
  grad_clip: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_eps: number;
  checkpoint_every: number;
}

/** One update's loss: builds its batch from the RNG and returns the loss closure for the gradient tape. */
export type MakeLoss = (rng: Rng, step: number) => { loss: () => tf.Scalar; dispose: () => void };

export interface LoopProgress {
  step: number;
  /** The RNG state at that step (before its batch is drawn). */
  rng: RngState;
  seconds: number;
  lossCurve: { step: number; loss: number }[];
}

export interface LoopOptions {
  stage: Stage;
  label: string;
  total: number;
  cfg: OptimConfig;
  params: ParamSet;
  adam: Adam;
  ema: { params: ParamSet; decay: number } | null;
  rng: Rng;
  makeLoss: MakeLoss;
  /** Where the loop resumes (0 for a fresh start). */
  progress: LoopProgress;
  /** Saves the state after `p.step` updates; returns the path written. */
  save: (p: LoopProgress, finalLoss: number) => Promise<string>;
  /** The path of the newest good checkpoint, for the NaN message. */
  lastCheckpoint: () => string | null;
  backend: string;
  onEvent: OnEvent;
  signal?: AbortSignal;
  /** Testing aid: behave as if aborted after this many updates (counted from 0). */
  stopAfter?: number;
}

export interface LoopResult {
  finalLoss: number;
  seconds: number;
  lossCurve: { step: number; loss: number }[];
}

let lastYield = 0;
/**
 * Let the event loop run (signals, timers, I/O) at most every 50 ms: a loop that only awaits
 * already-resolved promises never reaches them, and Ctrl-C would go unseen.
 */
export async function yieldToEventLoop(): Promise<void> {
  const now = performance.now();
  if (now - lastYield < 50) return;
  lastYield = now;
  await new Promise((r) => setImmediate(r));
}

export async function optimize(o: LoopOptions): Promise<LoopResult> {
  const { total, cfg } = o;
  const vars = o.params.list.map((p) => p.variable);
  const curve = o.progress.lossCurve.slice();
  const chunk = Math.max(1, Math.floor(total / 200));
  let chunkSum = 0;
  let chunkN = 0;
  let lastLoss = Number.NaN;
  let seconds = o.progress.seconds;
  let windowStart = performance.now();
  let windowSteps = 0;
  let itPerSec = 0;
  o.onEvent({ type: 'stage-start', stage: o.stage, label: o.label, total, startAt: o.progress.step, backend: o.backend });

  for (let step = o.progress.step; step < total; step++) {
    const t0 = performance.now();
    const rngBefore = o.rng.state();
    const batch = o.makeLoss(o.rng, step);
    const { value, grads } = tf.variableGrads(batch.loss, vars);
    batch.dispose();
    const loss = (await value.data())[0]!;
    value.dispose();
    if (!Number.isFinite(loss)) {
      tf.dispose(Object.values(grads));
      throw new NonFiniteLossError(o.label, step + 1, loss, o.lastCheckpoint());
    }
    // The weights after `step` updates just gave a finite loss: only now is a periodic checkpoint of
    // them written, so a checkpoint on disk never holds weights that lead straight to a NaN.
    if (step > o.progress.step && cfg.checkpoint_every > 0 && step % cfg.checkpoint_every === 0) {
      const path = await o.save({ step, rng: rngBefore, seconds, lossCurve: curve }, lastLoss);
      o.onEvent({ type: 'checkpoint', stage: o.stage, path, step });
    }
    const lr = learningRate(cfg.lr, step, total, cfg.warmup, cfg.decay);
    o.adam.step(
      o.params.list.map((p) => grads[p.variable.name]!),
      lr,
      cfg.grad_clip,
      o.ema ? { params: o.ema.params, decay: emaDecay(o.ema.decay, step) } : undefined,
    );
    tf.dispose(Object.values(grads));

    seconds += (performance.now() - t0) / 1000;
    lastLoss = loss;
    chunkSum += loss;
    chunkN += 1;
    if ((step + 1) % chunk === 0 || step + 1 === total) {
      curve.push({ step: step + 1, loss: chunkSum / chunkN });
      chunkSum = 0;
      chunkN = 0;
    }
    windowSteps += 1;
    const now = performance.now();
    if (now - windowStart > 500) {
      itPerSec = (windowSteps * 1000) / (now - windowStart);
      windowStart = now;
      windowSteps = 0;
    }
    o.onEvent({ type: 'step', stage: o.stage, label: o.label, step: step + 1, total, loss, lr, itPerSec });
    await yieldToEventLoop();

    const done = step + 1 === total;
    const interrupted = o.signal?.aborted || (o.stopAfter !== undefined && step + 1 >= o.stopAfter);
    if (!done && interrupted) {
      const path = await o.save({ step: step + 1, rng: o.rng.state(), seconds, lossCurve: curve }, loss);
      o.onEvent({ type: 'checkpoint', stage: o.stage, path, step: step + 1 });
      throw new InterruptedError(path);
    }
  }
  return { finalLoss: lastLoss, seconds, lossCurve: curve };
}
