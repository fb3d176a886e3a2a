import { afterEach, describe, expect, test } from 'vitest';
import { dawnFlags, initBackend, optionalLoaders, resolveAuto } from '../src/backend.js';
import { BackendUnavailableError } from '../src/errors.js';
import { tf } from '../src/tf.js';

const saved = { ...optionalLoaders };
afterEach(() => Object.assign(optionalLoaders, saved));

describe('backend selection', () => {
  test('HALFSTEP_DAWN_FLAGS gives Dawn its options, split at spaces (each option keeps its commas)', () => {
    expect(dawnFlags({})).toEqual([]);
    expect(dawnFlags({ HALFSTEP_DAWN_FLAGS: ' enable-dawn-features=skip_validation,disable_robustness  backend=vulkan ' })).toEqual([
      'enable-dawn-features=skip_validation,disable_robustness',
      'backend=vulkan',
    ]);
  });

  test('tensorflow gives a clear "not installed" error when tfjs-node is absent', async () => {
    const e = await initBackend('tensorflow').catch((x) => x);
    expect(e).toBeInstanceOf(BackendUnavailableError);
    expect(e.message).toMatch(/backend "tensorflow" is not available: neither @tensorflow\/tfjs-node-gpu nor @tensorflow\/tfjs-node is installed/);
  });

  test('auto prefers tensorflow, then webgpu with an adapter, then wasm', async () => {
    optionalLoaders.tensorflow = async () => '@tensorflow/tfjs-node';
    expect(await resolveAuto()).toBe('tensorflow');
    optionalLoaders.tensorflow = async () => {
      throw new BackendUnavailableError('no');
    };
    optionalLoaders.webgpu = async () => true;
    optionalLoaders.gpuDevicePresent = () => true;
    expect(await resolveAuto()).toBe('webgpu');
    optionalLoaders.gpuDevicePresent = () => false;
    expect(await resolveAuto()).toBe('wasm'); // no GPU device node: Dawn is not even probed
    optionalLoaders.gpuDevicePresent = () => true;
    optionalLoaders.webgpu = async () => false;
    expect(await resolveAuto()).toBe('wasm');
    optionalLoaders.webgpu = async () => {
      throw new BackendUnavailableError('no package');
    };
    expect(await resolveAuto()).toBe('wasm');
  });

  test('webgpu without an adapter is "not available"', async () => {
    optionalLoaders.webgpu = async () => false;
    await expect(initBackend('webgpu')).rejects.toThrow(/backend "webgpu" is not available: Dawn found no GPU adapter/);
  });

  test('wasm and cpu initialise and compute', async () => {
    for (const b of ['wasm', 'cpu'] as const) {
      expect(await initBackend(b)).toBe(b);
      expect(tf.getBackend()).toBe(b);
      expect(Array.from(tf.add(tf.tensor([1, 2]), 1).dataSync())).toEqual([2, 3]);
    }
  });
});
