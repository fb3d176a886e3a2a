import { describe, expect, test } from 'vitest';
import { applySet, parseRecipe, recipeHash, roundSteps, roundUpdates, recipeReference } from '../src/recipe.js';
import { RecipeError } from '../src/errors.js';

const base = `name: r\ndata: {path: x.arrow, generate: {}}\n`;
function err(text: string, sets: string[] = []): RecipeError {
  try {
    parseRecipe(text, 'r.yaml', sets);
  } catch (e) {
    expect(e).toBeInstanceOf(RecipeError);
    return e as RecipeError;
  }
  throw new Error('expected a RecipeError');
}

describe('recipes', () => {
  test('defaults fill every section', () => {
    const r = parseRecipe(base);
    expect(r.train.steps).toBe(4000);
    expect(r.distill.start_steps).toBe(64);
    expect(r.model.mlp.hidden).toBe(256);
    expect(r.data.generate?.dist).toBe('swissroll');
  });

  test('an unknown key is refused with its path and the allowed keys', () => {
    const e = err(`${base}train: {stpes: 10}\n`);
    expect(e.path).toBe('train.stpes');
    expect(e.message).toMatch(/r\.yaml: train\.stpes: unknown key; allowed keys under train: steps, lr/);
  });

  test('a wrong type names the key and what was expected', () => {
    expect(err(`${base}train: {lr: fast}\n`).message).toMatch(/train\.lr: expected a number; got string "fast"/);
    expect(err(`${base}train: {steps: 1.5}\n`).message).toMatch(/train\.steps: expected an integer; got 1\.5/);
    expect(err(`${base}model: {parameterization: y}\n`).message).toMatch(/model\.parameterization: expected one of x, eps, v, both; got "y"/);
    expect(err(`${base}distill: 3\n`).message).toMatch(/distill: expected a mapping/);
  });

  test('impossible values are refused before any work', () => {
    expect(err(`${base}distill: {start_steps: 48, end_steps: 1}\n`).path).toBe('distill.start_steps');
    expect(err(`${base}distill: {start_steps: 48, end_steps: 1}\n`).message).toMatch(/expected end_steps·2\^k/);
    expect(err(`${base}distill: {start_steps: 2, end_steps: 4}\n`).path).toBe('distill.start_steps');
    expect(err(`${base}train: {lr: 0}\n`).message).toMatch(/train\.lr: expected a number > 0; got 0/);
    expect(err(`${base}model: {mlp: {emb_dim: 7}}\n`).path).toBe('model.mlp.emb_dim');
  });

  test('a missing dataset file without a generator is refused', () => {
    const e = err(`name: r\ndata: {path: /nonexistent/x.arrow}\n`);
    expect(e.path).toBe('data.path');
    expect(e.message).toMatch(/file not found: \/nonexistent\/x\.arrow/);
  });

  test('a missing required key and bad YAML are named', () => {
    expect(err(`data: {path: x.arrow, generate: {}}\n`).message).toMatch(/name: is required/);
    expect(err(`name: [unclosed\n`).message).toMatch(/r\.yaml: not valid YAML/);
  });

  test('--set overrides parse values as YAML and reach nested keys', () => {
    const r = parseRecipe(base, 'r.yaml', ['distill.start_steps=32', 'train.lr=3e-4', 'model.parameterization=both', 'eval.seed=9']);
    expect(r.distill.start_steps).toBe(32);
    expect(r.train.lr).toBeCloseTo(3e-4);
    expect(r.model.parameterization).toBe('both');
    expect(err(base, ['train.nope=1']).path).toBe('train.nope');
    expect(() => applySet({}, 'novalue')).toThrow(/key\.path=value/);
  });

  test('rounds halve from start to end; the last two rounds can get more updates', () => {
    const r = parseRecipe(`${base}distill: {start_steps: 8, end_steps: 1, updates: 10, updates_last: 20}\n`);
    expect(roundSteps(r)).toEqual([4, 2, 1]);
    expect(roundSteps(r).map((n) => roundUpdates(r, n))).toEqual([10, 20, 20]);
    expect(roundSteps(parseRecipe(`${base}distill: {start_steps: 64, end_steps: 4}\n`))).toEqual([32, 16, 8, 4]);
  });

  test('the hash changes with the recipe and not with key order', () => {
    const a = parseRecipe(`${base}seed: 1\n`);
    const b = parseRecipe(`seed: 1\n${base}`);
    expect(recipeHash(a)).toBe(recipeHash(b));
    expect(recipeHash(a)).not.toBe(recipeHash(parseRecipe(`${base}seed: 2\n`)));
  });

  test('the reference lists every key with its default', () => {
    const ref = recipeReference();
    const paths = ref.map((r) => r.path);
    expect(paths).toContain('distill.updates_last');
    expect(paths).toContain('model.mlp.hidden');
    expect(ref.find((r) => r.path === 'train.steps')!.default).toBe('4000');
  });
});
