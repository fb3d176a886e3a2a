/**
 * A small typed schema for YAML recipes: each field carries its type, default, bounds and doc line.
 * `validate` walks untrusted input, fills defaults and throws a RecipeError naming the key path;
 * `Infer<S>` gives the TypeScript type, so the Recipe type and its checks come from one place; and
 * `describe` lists every key for the README's recipe reference.
 */
import { RecipeError } from './errors.js';

interface Base<V> {
  readonly doc: string;
  /** Phantom field carrying the value type. */
  readonly _v?: V;
}
export interface NumSpec extends Base<number> {
  kind: 'number' | 'int';
  default?: number;
  min?: number;
  max?: number;
  exclusiveMin?: boolean;
}
export interface StrSpec<V extends string = string> extends Base<V> {
  kind: 'string';
  default?: V;
  values?: readonly V[];
}
export interface BoolSpec extends Base<boolean> {
  kind: 'bool';
  default?: boolean;
}
export interface OptSpec<V> extends Base<V | null> {
  kind: 'optional';
  inner: Spec<V>;
}
export interface ObjSpec<F extends Record<string, Spec<unknown>>> extends Base<{ [K in keyof F]: Infer<F[K]> }> {
  kind: 'object';
  fields: F;
}
export interface ListSpec<V> extends Base<V[]> {
  kind: 'list';
  item: Spec<V>;
  default?: V[];
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Spec<V = any> = Base<V> & { kind: string };
export type Infer<S> = S extends Base<infer V> ? V : never;

type NumOpts = { min?: number; max?: number; exclusiveMin?: boolean };
export const num = (def: number | undefined, doc: string, o: NumOpts = {}): NumSpec => ({ kind: 'number', default: def, doc, ...o });
export const int = (def: number | undefined, doc: string, o: NumOpts = {}): NumSpec => ({ kind: 'int', default: def, doc, ...o });
export const str = (def: string | undefined, doc: string): StrSpec => ({ kind: 'string', default: def, doc });
export const oneOf = <V extends string>(values: readonly V[], def: V | undefined, doc: string): StrSpec<V> => ({
  kind: 'string',
  values,
  default: def,
  doc,
});
export const bool = (def: boolean | undefined, doc: string): BoolSpec => ({ kind: 'bool', default: def, doc });
export const optional = <V>(inner: Spec<V>, doc?: string): OptSpec<V> => ({ kind: 'optional', inner, doc: doc ?? inner.doc });
export const obj = <F extends Record<string, Spec<unknown>>>(fields: F, doc = ''): ObjSpec<F> => ({ kind: 'object', fields, doc });
export const list = <V>(item: Spec<V>, def: V[] | undefined, doc: string): ListSpec<V> => ({ kind: 'list', item, default: def, doc });

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Validate `value` against `spec`; `path` names the key for errors. Missing keys take their defaults. */
export function validate<S extends Spec>(spec: S, value: unknown, path = ''): Infer<S> {
  const s = spec as Spec & Record<string, unknown>;
  const here = path || '(root)';
  switch (s.kind) {
    case 'object': {
      const fields = (s as unknown as ObjSpec<Record<string, Spec>>).fields;
      const v = value === undefined || value === null ? {} : value;
      if (typeof v !== 'object' || Array.isArray(v)) throw new RecipeError(here, `expected a mapping with keys ${Object.keys(fields).join(', ')}; got ${typeName(v)}`);
      for (const k of Object.keys(v)) {
        if (!(k in fields)) {
          throw new RecipeError(join(path, k), `unknown key; allowed keys${path ? ` under ${path}` : ''}: ${Object.keys(fields).join(', ')}`);
        }
      }
      const out: Record<string, unknown> = {};
      for (const [k, f] of Object.entries(fields)) out[k] = validate(f, (v as Record<string, unknown>)[k], join(path, k));
      return out as Infer<S>;
    }
    case 'optional':
      return (value === undefined || value === null ? null : validate((s as unknown as OptSpec<unknown>).inner, value, path)) as Infer<S>;
    case 'list': {
      const ls = s as unknown as ListSpec<unknown>;
      const v = value === undefined ? ls.default : value;
      if (v === undefined) throw new RecipeError(here, `is required (${ls.doc})`);
      if (!Array.isArray(v)) throw new RecipeError(here, `expected a list; got ${typeName(v)}`);
      return v.map((item, i) => validate(ls.item, item, `${path}[${i}]`)) as Infer<S>;
    }
    case 'number':
    case 'int': {
      const ns = s as unknown as NumSpec;
      const v = value === undefined ? ns.default : value;
      if (v === undefined) throw new RecipeError(here, `is required (${ns.doc})`);
      const what = ns.kind === 'int' ? 'an integer' : 'a number';
      if (typeof v !== 'number' || Number.isNaN(v) || !Number.isFinite(v)) throw new RecipeError(here, `expected ${what}; got ${typeName(v)}`);
      if (ns.kind === 'int' && !Number.isInteger(v)) throw new RecipeError(here, `expected an integer; got ${v}`);
      if (ns.min !== undefined && (ns.exclusiveMin ? v <= ns.min : v < ns.min)) {
        throw new RecipeError(here, `expected ${what} ${ns.exclusiveMin ? '>' : '≥'} ${ns.min}; got ${v}`);
      }
      if (ns.max !== undefined && v > ns.max) throw new RecipeError(here, `expected ${what} ≤ ${ns.max}; got ${v}`);
      return v as Infer<S>;
    }
    case 'string': {
      const ss = s as unknown as StrSpec;
      const v = value === undefined ? ss.default : value;
      if (v === undefined) throw new RecipeError(here, `is required (${ss.doc})`);
      if (typeof v !== 'string') throw new RecipeError(here, `expected ${ss.values ? `one of ${ss.values.join(', ')}` : 'a string'}; got ${typeName(v)}`);
      if (ss.values && !ss.values.includes(v)) throw new RecipeError(here, `expected one of ${ss.values.join(', ')}; got "${v}"`);
      return v as Infer<S>;
    }
    case 'bool': {
      const bs = s as unknown as BoolSpec;
      const v = value === undefined ? bs.default : value;
      if (v === undefined) throw new RecipeError(here, `is required (${bs.doc})`);
      if (typeof v !== 'boolean') throw new RecipeError(here, `expected true or false; got ${typeName(v)}`);
      return v as Infer<S>;
    }
    default:
      throw new Error(`unknown spec kind ${s.kind}`);
  }
}

function join(path: string, k: string): string {
  return path ? `${path}.${k}` : k;
}

/** One row per leaf key: path, type, default, doc (for the README's recipe reference). */
export function describe(spec: Spec, path = ''): { path: string; type: string; default: string; doc: string }[] {
  const s = spec as Spec & Record<string, unknown>;
  switch (s.kind) {
    case 'object':
      return Object.entries((s as unknown as ObjSpec<Record<string, Spec>>).fields).flatMap(([k, f]) => describe(f, join(path, k)));
    case 'optional': {
      const inner = (s as unknown as OptSpec<unknown>).inner;
      if ((inner as Spec).kind === 'object') return [{ path, type: 'mapping (optional)', default: '—', doc: s.doc }, ...describe(inner, path)];
      return describe(inner, path).map((r) => ({ ...r, type: `${r.type} or null`, default: r.default === '(required)' ? 'null' : r.default }));
    }
    default: {
      const d = (s as { default?: unknown }).default;
      let type = s.kind as string;
      const ns = s as unknown as NumSpec;
      if (s.kind === 'string' && (s as unknown as StrSpec).values) type = (s as unknown as StrSpec).values!.join(' \\| ');
      if ((s.kind === 'int' || s.kind === 'number') && (ns.min !== undefined || ns.max !== undefined)) {
        type += ` ${ns.min !== undefined ? `${ns.exclusiveMin ? '>' : '≥'} ${ns.min}` : ''}${ns.min !== undefined && ns.max !== undefined ? ', ' : ''}${ns.max !== undefined ? `≤ ${ns.max}` : ''}`;
      }
      return [{ path, type, default: d === undefined ? '(required)' : JSON.stringify(d), doc: s.doc }];
    }
  }
}
