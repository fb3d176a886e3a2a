/** Adam, global-norm gradient clipping, EMA of weights and learning-rate schedules, on tfjs tensors. */
import { tf } from './tf.js';
import type { ParamSet } from './model/params.js';
import { hostBackend, ownedView, viewOf } from './kernels/memory.js';
import { adamStepWgsl } from './kernels/webgpu/optim.js';
import { webgpuKernelsActive } from './kernels/webgpu/index.js';

export type Decay = 'cosine' | 'linear' | 'none';

/**
 * Learning rate at update `step` (0-based) of `total`: linear warm-up from 0 over `warmup` updates,
 * then constant, linear or cosine decay to 0 at the last update.
 */
export function learningRate(peak: number, step: number, total: number, warmup: number, decay: Decay): number {
  if (warmup > 0 && step < warmup) return (peak * (step + 1)) / warmup;
  const span = Math.max(1, total - warmup);
  const p = Math.min(1, (step - warmup) / span);
  switch (decay) {
    case 'none':
      return peak;
    case 'linear':
      return peak * (1 - p);
    case 'cosine':
      return peak * 0.5 * (1 + Math.cos(Math.PI * p));
  }
}

/** Scale gradients so that their global L2 norm is at most maxNorm (no-op if maxNorm ≤ 0). Returns the norm before clipping. */
export function clipByGlobalNorm(grads: tf.Tensor[], maxNorm: number): { grads: tf.Tensor[]; norm: tf.Scalar } {
  return tf.tidy(() => {
    const norm = tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))) as tf.Scalar;
    if (maxNorm <= 0) return { grads: grads.map((g) => tf.clone(g)), norm };
    const scale = tf.div(maxNorm, tf.maximum(norm, maxNorm));
    return { grads: grads.map((g) => tf.mul(g, scale)), norm };
  });
}

export interface AdamConfig {
  beta1: number;
  beta2: number;
  eps: number;
}

/** Adam (Kingma & Ba 2015) with bias correction; its state is plain named tensors so checkpoints can hold it. */
export class Adam {
  t = 0;
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];

  constructor(private readonly params: ParamSet, private readonly cfg: AdamConfig) {
    this.m = params.list.map((p) => tf.variable(tf.zerosLike(p.variable), false));
    this.v = params.list.map((p) => tf.variable(tf.zerosLike(p.variable), false));
  }

  /**
   * One update with the gradients first scaled to global norm ≤ maxNorm (0 = no clipping), then the
   * EMA update ema ← d·ema + (1 − d)·θ if `ema` is given (fused into the same pass on webgpu); returns the
   * norm before clipping where it is known without waiting for the device (the host backends), else null.
   * On the cpu and wasm backends clipping and Adam run fused, in one pass over each parameter's memory
   * (hundreds of small tfjs ops become one loop); on webgpu as a few WGSL dispatches per parameter
   * (kernels/webgpu/optim.ts); elsewhere as tfjs ops that stay on the device.
   */
  step(grads: tf.Tensor[], lr: number, maxNorm: number, ema?: { params: ParamSet; decay: number }): number | null {
    if (webgpuKernelsActive()) {
      this.t += 1;
      const e = ema && { vars: ema.params.list.map((p) => p.variable), decay: ema.decay };
      const scale = adamStepWgsl(this.params.list.map((p) => p.variable), this.m, this.v, grads, { lr, ...this.cfg, t: this.t, maxNorm }, e);
      scale.dispose();
      return null;
    }
    const norm = this.hostOrOpsStep(grads, lr, maxNorm);
    if (ema) updateEma(ema.params, this.params, ema.decay);
    return norm;
  }

  private hostOrOpsStep(grads: tf.Tensor[], lr: number, maxNorm: number): number | null {
    const host = hostBackend();
    if (!host) {
      const clipped = clipByGlobalNorm(grads, maxNorm);
      this.apply(clipped.grads, lr);
      tf.dispose([...clipped.grads, clipped.norm]);
      return null;
    }
    let sq = 0;
    for (const g of grads) {
      const gv = viewOf(host.kind, host.backend, g);
      for (let j = 0; j < gv.length; j++) sq += gv[j]! * gv[j]!;
    }
    const norm = Math.sqrt(sq);
    const scale = maxNorm > 0 ? maxNorm / Math.max(norm, maxNorm) : 1;
    this.t += 1;
    const { beta1: b1, beta2: b2, eps } = this.cfg;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    const step = lr / c1;
    this.params.list.forEach((p, i) => {
      // Copy-on-write first (it may allocate, which can move wasm memory), then take the views.
      for (const t of [p.variable, this.m[i]!, this.v[i]!]) ownedView(host, t);
      const [pv, mv, vv, gv] = [p.variable, this.m[i]!, this.v[i]!, grads[i]!].map((t) => viewOf(host.kind, host.backend, t)) as [Float32Array, Float32Array, Float32Array, Float32Array];
      for (let j = 0; j < pv.length; j++) {
        const g = gv[j]! * scale;
        const m = b1 * mv[j]! + (1 - b1) * g;
        const v = b2 * vv[j]! + (1 - b2) * g * g;
        mv[j] = m;
        vv[j] = v;
        pv[j] = pv[j]! - (step * m) / (Math.sqrt(v / c2) + eps);
      }
    });
    return norm;
  }

  /** θ ← θ − lr·m̂/(sqrt(v̂) + ε), m̂ = m/(1−β1^t), v̂ = v/(1−β2^t), as tfjs ops. */
  apply(grads: tf.Tensor[], lr: number): void {
    this.t += 1;
    const { beta1: b1, beta2: b2, eps } = this.cfg;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    tf.tidy(() => {
      this.params.list.forEach((p, i) => {
        const g = grads[i]!;
        const m = tf.add(tf.mul(this.m[i]!, b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(this.v[i]!, b2), tf.mul(tf.square(g), 1 - b2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        const upd = tf.div(tf.mul(m, lr / c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        p.variable.assign(tf.sub(p.variable, upd));
      });
    });
  }

  dispose(): void {
    for (const t of [...this.m, ...this.v]) t.dispose();
  }
}

/** EMA decay at update t with the usual warm-up: min(decay, (1 + t)/(10 + t)). */
export function emaDecay(decay: number, t: number): number {
  return Math.min(decay, (1 + t) / (10 + t));
}

/** ema ← d·ema + (1 − d)·θ for every parameter (in place on the cpu and wasm backends). */
export function updateEma(ema: ParamSet, params: ParamSet, d: number): void {
  const host = hostBackend();
  if (host) {
    ema.list.forEach((e, i) => {
      const ev = ownedView(host, e.variable);
      const pv = viewOf(host.kind, host.backend, params.list[i]!.variable);
      for (let j = 0; j < ev.length; j++) ev[j] = d * ev[j]! + (1 - d) * pv[j]!;
    });
    return;
  }
  tf.tidy(() => {
    ema.list.forEach((e, i) => {
      e.variable.assign(tf.add(tf.mul(e.variable, d), tf.mul(params.list[i]!.variable, 1 - d)));
    });
  });
}

/** A new ParamSet with the same names holding copies of `src`'s values. */
export function cloneParams(src: ParamSet, ctor: new () => ParamSet): ParamSet {
  const out = new ctor();
  for (const p of src.list) out.add(p.name, tf.clone(p.variable));
  return out;
}
