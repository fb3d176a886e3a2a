/**
 * Picks and initialises the tfjs backend. The code that trains and samples is the same on every
 * backend; this is the one place that knows how each one is loaded.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import { tf } from './tf.js';
import { BackendUnavailableError } from './errors.js';
import type { BackendName } from './recipe.js';
import { ortAvailable } from './onnx/runtime.js';
import { registerChainedAddN } from './kernels/addn.js';
import { registerWebgpuKernels } from './kernels/webgpu/index.js';
import { registerOrtMatMul } from './kernels/matmul.js';
import { registerOrtConv2D, registerOrtConv2DBackpropFilter, registerOrtConv2DBackpropInput, registerOrtFusedConv2D } from './kernels/conv.js';
import { registerSharedIdentity } from './kernels/identity.js';
import { registerOrtGroupNorm } from './kernels/groupnorm.js';
import { registerOrtSum } from './kernels/reduce.js';
import { registerOrtConcat, registerOrtSplitV } from './kernels/split.js';

export type ResolvedBackend = Exclude<BackendName, 'auto'>;

const req = createRequire(typeof __filename !== 'undefined' ? __filename : import.meta.url);

/** Loaders for optional native backends; tests replace them to exercise the selection logic. */
export const optionalLoaders = {
  /** Loads @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node if the user installed one; returns its name. */
  async tensorflow(): Promise<string> {
    const errors: string[] = [];
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(/* @vite-ignore */ pkg);
        return pkg;
      } catch (e) {
        errors.push(`${pkg}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    throw new BackendUnavailableError(
      `backend "tensorflow" is not available: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed ` +
        `(install one with \`npm install @tensorflow/tfjs-node\` on a machine that can download libtensorflow). Details: ${errors.join('; ')}`,
    );
  },
  /** Whether the machine shows a GPU to programs (NVIDIA or DRI device nodes). */
  gpuDevicePresent(): boolean {
    return existsSync('/dev/nvidia0') || existsSync('/dev/dri') || process.platform === 'darwin' || process.platform === 'win32';
  },
  /** Creates a WebGPU adapter through Dawn (npm package `webgpu`); null if there is no GPU adapter. */
  async webgpu(): Promise<boolean> {
    let create: (opts: string[]) => { requestAdapter(o?: unknown): Promise<unknown | null> };
    let globals: object;
    try {
      // through require, which honours NODE_PATH: on the GPU machine the package sits beside the bundle
      ({ create, globals } = req('webgpu') as { create: typeof create; globals: object });
    } catch (e) {
      throw new BackendUnavailableError(`backend "webgpu" is not available: the npm package "webgpu" could not be loaded (${(e as Error).message.split('\n')[0]})`);
    }
    // Dawn's Vulkan loader complains on every start where XDG_RUNTIME_DIR is unset (e.g. as root in a container)
    process.env.XDG_RUNTIME_DIR ??= tmpdir();
    // Dawn options, e.g. HALFSTEP_DAWN_FLAGS='enable-dawn-features=skip_validation' (the webgpu package's create())
    const gpu = create(dawnFlags());
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) return false;
    // tfjs-backend-webgpu registers itself only if navigator.gpu exists when it is imported, and it
    // uses the WebGPU enums (GPUBufferUsage, GPUMapMode, …) as globals, as in a browser.
    Object.assign(globalThis, globals);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node' }, configurable: true, writable: true });
    await import('@tensorflow/tfjs-backend-webgpu');
    return true;
  },
};

let current: ResolvedBackend | null = null;

/** The options passed to Dawn: HALFSTEP_DAWN_FLAGS, separated by spaces (each option's own list uses commas). */
export function dawnFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.HALFSTEP_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
}

/** onnxruntime-backed kernels on the host backends, unless HALFSTEP_NATIVE_KERNELS=0 or onnxruntime-node is missing. */
export function nativeKernelsWanted(): boolean {
  return process.env.HALFSTEP_NATIVE_KERNELS !== '0' && ortAvailable();
}

/** Which kernels halfstep replaced on the active backend (named in reports and logs). */
export function kernelNote(): string {
  if (current === 'wasm' || current === 'cpu') return registered.has(current) ? 'MatMul, Conv2D (+ gradients), GroupNorm, Sum, Concat/Split via onnxruntime' : 'stock tfjs kernels';
  if (current === 'webgpu') return registered.has(current) ? "halfstep's WGSL Conv2DBackpropFilter, GroupNorm, clip+Adam+EMA" : 'stock tfjs kernels';
  return 'stock tfjs kernels';
}

const registered = new Set<string>();
export function registerHostKernels(kind: 'wasm' | 'cpu'): void {
  registerOrtMatMul(kind);
  registerOrtConv2D(kind);
  registerOrtFusedConv2D(kind);
  registerOrtConv2DBackpropInput(kind);
  registerOrtConv2DBackpropFilter(kind);
  if (kind === 'wasm') registerSharedIdentity(kind);
  registerOrtGroupNorm(kind);
  registerOrtSum(kind);
  registerOrtConcat(kind);
  registerOrtSplitV(kind);
  registered.add(kind);
}

/** The backend halfstep initialised, or null before initBackend. */
export function currentBackend(): ResolvedBackend | null {
  return current;
}

/** Initialise `name` (resolving auto) and make it tfjs's active backend. Idempotent for the same name. */
export async function initBackend(name: BackendName): Promise<ResolvedBackend> {
  const resolved = name === 'auto' ? await resolveAuto() : name;
  if (current === resolved && tf.getBackend() === tfName(resolved)) return resolved;
  switch (resolved) {
    case 'wasm': {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dir = join(dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/';
      wasm.setWasmPaths(dir);
      wasm.setThreadsCount?.(1);
      break;
    }
    case 'cpu':
      await quietly(() => import('@tensorflow/tfjs-backend-cpu'));
      break;
    case 'webgpu':
      if (!(await optionalLoaders.webgpu())) throw new BackendUnavailableError('backend "webgpu" is not available: Dawn found no GPU adapter on this machine');
      break;
    case 'tensorflow':
      await optionalLoaders.tensorflow();
      break;
  }
  applyFlagOverrides();
  const ok = await quietly(() => tf.setBackend(tfName(resolved)));
  if (!ok) throw new BackendUnavailableError(`backend "${resolved}" failed to initialise`);
  // tfjs-backend-cpu prints a banner recommending tfjs-node on its first tensor (console.warn, after quietly() returned)
  if (resolved === 'cpu') (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  await tf.ready();
  if ((resolved === 'wasm' || resolved === 'cpu') && nativeKernelsWanted()) registerHostKernels(resolved);
  if (resolved === 'webgpu') {
    registerChainedAddN('webgpu');
    if (process.env.HALFSTEP_NATIVE_KERNELS !== '0') {
      registerWebgpuKernels();
      registered.add('webgpu');
    }
  }
  current = resolved;
  return resolved;
}

/**
 * tfjs flags from the environment, e.g. HALFSTEP_TF_FLAGS='{"WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE": 64}',
 * for experiments with a backend's settings without code changes.
 */
function applyFlagOverrides(): void {
  const text = process.env.HALFSTEP_TF_FLAGS;
  if (!text) return;
  let flags: unknown;
  try {
    flags = JSON.parse(text);
  } catch {
    throw new BackendUnavailableError(`HALFSTEP_TF_FLAGS is not JSON: ${text}`);
  }
  if (!flags || typeof flags !== 'object' || Array.isArray(flags)) throw new BackendUnavailableError(`HALFSTEP_TF_FLAGS must be a JSON object of tfjs flags; got ${text}`);
  tf.env().setFlags(flags as Parameters<ReturnType<typeof tf.env>["setFlags"]>[0]);
}

/** auto: tensorflow if the user installed tfjs-node(-gpu), else webgpu if a GPU adapter is found, else wasm. */
export async function resolveAuto(): Promise<ResolvedBackend> {
  try {
    await optionalLoaders.tensorflow();
    return 'tensorflow';
  } catch {
    /* not installed */
  }
  // Probing Dawn on a machine without a GPU makes its native code print Vulkan warnings to stderr:
  // only probe where a GPU device node exists.
  if (optionalLoaders.gpuDevicePresent()) {
    try {
      if (await optionalLoaders.webgpu()) return 'webgpu';
    } catch {
      /* no package or no adapter */
    }
  }
  return 'wasm';
}

function tfName(b: ResolvedBackend): string {
  return b;
}

/** Run `f` with console.warn/log silenced (tfjs prints a banner about tfjs-node when a backend starts in Node). */
async function quietly<R>(f: () => Promise<R> | R): Promise<R> {
  const { warn, log } = console;
  console.warn = () => {};
  console.log = () => {};
  try {
    return await f();
  } finally {
    console.warn = warn;
    console.log = log;
  }
}
