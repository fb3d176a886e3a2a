// Bundles the CLI (and bench entry points) with esbuild. tfjs-core's gradient registrations ship only
// as extension-less ES modules, which Node cannot import directly; a bundle resolves them.
import { build } from 'esbuild';
const banner = [
  "import { createRequire as __halfstepCreateRequire } from 'node:module';",
  "import { fileURLToPath as __halfstepToPath } from 'node:url';",
  "import { dirname as __halfstepDirname } from 'node:path';",
  'const require = __halfstepCreateRequire(import.meta.url);',
  'const __filename = __halfstepToPath(import.meta.url);',
  'const __dirname = __halfstepDirname(__filename);',
].join('\n');
// `--gpu`: the entries as .gpu/<name>.mjs for the device machine (after ../shared/gpu/pack.sh filled
// .gpu/ with Node.js, Dawn and the Vulkan loaders). ES modules, because vega has a top-level await.
const gpu = process.argv.includes('--gpu');
const entries = process.argv.slice(2).filter((a) => a !== '--gpu');
await build({
  entryPoints: entries.length ? entries : ['src/cli.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  outdir: 'dist',
  outbase: '.',
  mainFields: ['module', 'main'],
  external: ['onnxruntime-node', 'sharp', 'webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'playwright-core', 'fastify'],
  banner: { js: banner },
  logLevel: 'warning',
  sourcemap: 'linked',
  ...(gpu ? { outdir: '.gpu', outbase: undefined, entryNames: '[name]', outExtension: { '.js': '.mjs' }, sourcemap: false } : {}),
});
