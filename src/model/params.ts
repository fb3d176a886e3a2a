/** Named trainable parameters and their deterministic initialisation from halfstep's own RNG. */
import { tf } from '../tf.js';
import type { Rng } from '../rng.js';

export interface Param {
  readonly name: string;
  readonly variable: tf.Variable;
}

/** An ordered, named set of variables; names are stable and used as checkpoint keys. */
export class ParamSet {
  readonly list: Param[] = [];
  private readonly byName = new Map<string, Param>();

  add(name: string, value: tf.Tensor): tf.Variable {
    if (this.byName.has(name)) throw new Error(`duplicate parameter name ${name}`);
    const variable = tf.variable(value, true, `${name}_${nextId++}`);
    value.dispose();
    const p = { name, variable };
    this.list.push(p);
    this.byName.set(name, p);
    return variable;
  }

  get(name: string): tf.Variable {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no parameter named ${name}`);
    return p.variable;
  }

  count(): number {
    return this.list.reduce((n, p) => n + p.variable.size, 0);
  }

  dispose(): void {
    for (const p of this.list) p.variable.dispose();
  }
}
let nextId = 0;

/** Uniform(−limit, limit) with limit = sqrt(6 / (fanIn + fanOut)) · gain (Glorot/Xavier uniform). */
export function glorotUniform(rng: Rng, shape: number[], fanIn: number, fanOut: number, gain = 1): tf.Tensor {
  const limit = gain * Math.sqrt(6 / (fanIn + fanOut));
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (2 * rng.uniform() - 1) * limit;
  return tf.tensor(v, shape);
}

export function zeros(shape: number[]): tf.Tensor {
  return tf.zeros(shape);
}

export function ones(shape: number[]): tf.Tensor {
  return tf.ones(shape);
}
