import { defineConfig } from 'vitest/config';
export default defineConfig({
  resolve: { mainFields: ['module', 'jsnext:main', 'jsnext'] },
  test: { server: { deps: { inline: [/@tensorflow\//] } }, testTimeout: 120000 },
});
