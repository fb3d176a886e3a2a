import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { withReference } from '../scripts/docs.js';
import { VERSION } from '../src/version.js';

test('the README opens with the two commands and its recipe reference matches the schema (npm run docs)', () => {
  const readme = readFileSync('README.md', 'utf8');
  const head = readme.split('\n').slice(0, 25).join('\n');
  expect(head).toContain('npm ci && npm start');
  expect(head).toContain('npm test');
  expect(withReference(readme)).toBe(readme);
});

test('.ci/run runs the README test command after npm ci', () => {
  const ci = readFileSync('.ci/run', 'utf8');
  expect(ci.indexOf('npm ci')).toBeGreaterThan(-1);
  expect(ci.indexOf('npm test')).toBeGreaterThan(ci.indexOf('npm ci'));
});

test('the version constant matches package.json', () => {
  expect(JSON.parse(readFileSync('package.json', 'utf8')).version).toBe(VERSION);
});
