import { defineConfig } from 'vitest/config';

export default defineConfig({
  // tfjs-core's gradient registrations are extension-less ES modules: let vite resolve them.
  resolve: { mainFields: ['module', 'jsnext:main', 'jsnext'] },
  test: {
    server: { deps: { inline: [/@tensorflow\//] } },
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
  },
});
