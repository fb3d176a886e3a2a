import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { loadCheckpoint } from '../src/checkpoint.js';
import { tinyArgs, tmp } from './helpers.js';

/** Run the built CLI; send SIGINT once stderr matches `when`. */
function runUntil(args: string[], when: RegExp): Promise<{ code: number | null; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/src/cli.js', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let sent = false;
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
      if (!sent && when.test(err)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.on('close', (code) => resolve({ code, err }));
  });
}

test('Ctrl-C (SIGINT) in the real binary saves a checkpoint and exits with 130; --resume finishes', async () => {
  const dir = tmp();
  const args = ['run', ...tinyArgs(dir, ['--set', 'train.steps=400'])];
  const first = await runUntil(args, /\[teacher \(8 steps\)\] \d+\/400/);
  expect(first.err).toMatch(/stopping: saving progress/);
  expect(first.err).toMatch(/interrupted; state saved to .*progress\.ckpt; continue with --resume/);
  expect(first.code).toBe(130);
  const progress = join(dir, 'run', 'checkpoints', 'progress.ckpt');
  const step = loadCheckpoint<{ step: number; stage: string }>(progress).meta;
  expect(step.stage).toBe('teacher');
  expect(step.step).toBeGreaterThan(0);
  expect(step.step).toBeLessThan(400);
  const second = await runUntil([...args, '--resume', '--quiet'], /$^/);
  expect(second.code).toBe(0);
  expect(existsSync(join(dir, 'run', 'report.html'))).toBe(true);
  expect(existsSync(progress)).toBe(false);
});
