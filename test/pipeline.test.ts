import { describe, expect, test } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/checkpoint.js';
import type { ReportJson } from '../src/eval/report.js';
import { cli, tinyArgs, tmp } from './helpers.js';

function tensorsOf(path: string): Map<string, number[]> {
  const ck = loadCheckpoint(path);
  return new Map([...ck.tensors].map(([k, v]) => [k, Array.from(v.data)]));
}

describe('the CLI end to end on a tiny recipe', () => {
  const dir = tmp();
  let result: Awaited<ReturnType<typeof cli>>;

  test('runs 8 → 4 → 2 → 1 and writes the report', async () => {
    result = await cli(['run', ...tinyArgs(dir)]);
    expect(result.err).not.toMatch(/internal error/);
    expect(result.code).toBe(0);
    const run = join(dir, 'run');
    for (const f of ['report.json', 'report.md', 'report.html', 'recipe.yaml', 'figures/metrics.png', 'figures/teacher-1.png', 'figures/student-4.png', 'figures/loss.png']) {
      expect(existsSync(join(run, f)), f).toBe(true);
    }
    for (const n of [4, 2, 1]) expect(existsSync(join(run, 'checkpoints', `student-${n}.ckpt`))).toBe(true);
    expect(existsSync(join(run, 'checkpoints', 'progress.ckpt'))).toBe(false);
    const report = JSON.parse(readFileSync(join(run, 'report.json'), 'utf8')) as ReportJson;
    expect(report.backend).toBe('wasm');
    expect(report.recipe.name).toBe('tiny');
    expect(report.rounds.map((r) => [r.round, r.steps, r.updates])).toEqual([
      [1, 4, 30],
      [2, 2, 30],
      [3, 1, 30],
    ]);
    expect(report.rows.map((r) => `${r.sampler}${r.steps}`)).toEqual(['teacher8', 'student8', 'teacher4', 'student4', 'teacher2', 'student2', 'teacher1', 'student1']);
    for (const row of report.rows) {
      expect(Number.isFinite(row.metrics.swd)).toBe(true);
      expect(Number.isFinite(row.metrics.energy)).toBe(true);
      expect(row.latency_ms_per_sample).toBeGreaterThan(0);
    }
    expect(report.rows[0]!.metrics.teacher_mse).toBe(0);
    expect(report.rows[6]!.metrics.teacher_mse).toBeGreaterThan(0);
    const html = readFileSync(join(run, 'report.html'), 'utf8');
    expect(html).toMatch(/<svg/);
    expect(html).toMatch(/data:image\/png;base64,/);
    expect(html).not.toMatch(/src="figures\//); // self-contained
    expect(readFileSync(join(run, 'report.md'), 'utf8')).toMatch(/\| 1 \| .* \|/);
    expect(result.out).toMatch(/\| steps \| teacher DDIM swd/);
    expect(result.err).toMatch(/backend wasm/);
  });

  test('a second run of the same recipe reuses the checkpoints and only re-evaluates', async () => {
    const again = await cli(['run', ...tinyArgs(dir), '--quiet']);
    expect(again.code).toBe(0);
    expect(again.err).toBe('');
  });

  test('`sample` draws from a student checkpoint', async () => {
    const out = join(dir, 's.npy');
    const r = await cli(['sample', join(dir, 'run', 'checkpoints', 'student-2.ckpt'), '--n', '50', '--out', out, '--backend', 'wasm']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/50 samples, 2 steps/);
    expect(readFileSync(out).length).toBeGreaterThan(400);
    const png = await cli(['sample', join(dir, 'run', 'checkpoints', 'teacher.ckpt'), '--n', '50', '--out', join(dir, 's.png'), '--backend', 'wasm']);
    expect(png.code).toBe(0);
    const bad = await cli(['sample', join(dir, 'run', 'checkpoints', 'teacher.ckpt'), '--out', join(dir, 's.gif')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/unsupported extension "\.gif"/);
  });

  test('a truncated or foreign checkpoint is an error message, not a stack trace', async () => {
    const bad = join(dir, 'bad.ckpt');
    writeFileSync(bad, readFileSync(join(dir, 'run', 'checkpoints', 'student-1.ckpt')).subarray(0, 100));
    const r = await cli(['sample', bad, '--out', join(dir, 'x.npy')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^halfstep: .*bad\.ckpt: truncated/);
    expect(r.err).not.toMatch(/    at /);
    writeFileSync(bad, 'not a checkpoint at all');
    expect((await cli(['sample', bad, '--out', join(dir, 'x.npy')])).err).toMatch(/not a halfstep checkpoint/);
  });

  test('recipe errors stop the CLI before any work, naming the key', async () => {
    const d = tmp();
    const r = await cli(['run', ...tinyArgs(d, ['--set', 'distill.start_steps=12'])]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/distill\.start_steps: expected end_steps·2\^k/);
    expect(existsSync(join(d, 'run'))).toBe(false);
    const unknown = await cli(['run', ...tinyArgs(d, ['--set', 'train.steps_per_epoch=3'])]);
    expect(unknown.err).toMatch(/train\.steps_per_epoch: unknown key/);
    const missing = await cli(['run', join(d, 'nope.yaml')]);
    expect(missing.err).toMatch(/nope\.yaml: recipe file not found/);
  });

  test('a dataset whose shape does not fit the model is refused', async () => {
    const d = tmp();
    // a 2D dataset declared as [1, 2] rows: the mlp takes vectors only
    const p = join(d, 'img.arrow');
    const { makeToyDataset } = await import('../src/data/make.js');
    const { writeDataset } = await import('../src/data/dataset.js');
    writeDataset(p, { ...makeToyDataset({ dist: 'moons', n: 100, holdout: 0.1, seed: 0 }), shape: [1, 2] });
    const r = await cli(['run', 'test/fixtures/tiny.yaml', '--out', join(d, 'run'), '--set', `data.path=${p}`]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/model\.type: mlp takes vector data of shape \[D\]; the dataset's examples have shape \[1, 2\]/);
  });
});

describe('resume and failure', () => {
  test('an interrupted and resumed run ends with the same weights as an uninterrupted one', async () => {
    const a = tmp();
    const b = tmp();
    expect((await cli(['run', ...tinyArgs(a), '--quiet'])).code).toBe(0);

    // 1. stop inside teacher training (after 30 of 60 updates, between periodic checkpoints at 20 and 40)
    const first = await cli(['run', ...tinyArgs(b), '--stop-after', '30']);
    expect(first.code).toBe(130);
    expect(first.err).toMatch(/interrupted; state saved to .*progress\.ckpt; continue with --resume/);

    // 2. without --resume the interrupted state is not thrown away
    const refused = await cli(['run', ...tinyArgs(b)]);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/holds an interrupted run \(teacher at 30\/60 updates\); continue it with --resume/);

    // 3. resume, then "Ctrl-C" halfway through the first distillation round
    const second = await cli(['run', ...tinyArgs(b), '--resume'], {
      onErr: (s, abort) => {
        if (/\[round 1: 8 → 4 steps\] 15\/30/.test(s)) abort();
      },
    });
    expect(second.code).toBe(130);
    expect(second.err).toMatch(/resuming teacher \(8 steps\) at update 30\/60/);

    // 4. resume to the end
    const third = await cli(['run', ...tinyArgs(b), '--resume']);
    expect(third.code).toBe(0);
    expect(third.err).toMatch(/resuming distill \(4 steps\) at update 15\/30/);

    for (const f of ['teacher.ckpt', 'student-4.ckpt', 'student-2.ckpt', 'student-1.ckpt']) {
      const ta = tensorsOf(join(a, 'run', 'checkpoints', f));
      const tb = tensorsOf(join(b, 'run', 'checkpoints', f));
      expect([...tb.keys()]).toEqual([...ta.keys()]);
      for (const [k, v] of ta) expect(tb.get(k), `${f} ${k}`).toEqual(v);
    }
  });

  test('resuming with a different recipe is refused and names the keys that differ', async () => {
    const d = tmp();
    expect((await cli(['run', ...tinyArgs(d), '--stop-after', '25'])).code).toBe(130);
    const r = await cli(['run', ...tinyArgs(d, ['--set', 'train.lr=0.01']), '--resume']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/different recipe \(differs at: train\.lr\)/);
  });

  test('a run distilled to 2 steps can be extended to 1 step later without redoing its rounds', async () => {
    const d = tmp();
    expect((await cli(['run', ...tinyArgs(d, ['--set', 'distill.end_steps=2']), '--quiet'])).code).toBe(0);
    const before = tensorsOf(join(d, 'run', 'checkpoints', 'student-2.ckpt'));
    const r = await cli(['run', ...tinyArgs(d)]);
    expect(r.code).toBe(0);
    expect(r.err).not.toMatch(/round 1: 8 → 4/);
    expect(r.err).not.toMatch(/round 2: 4 → 2/);
    expect(r.err).toMatch(/round 3: 2 → 1 steps/);
    expect(tensorsOf(join(d, 'run', 'checkpoints', 'student-2.ckpt'))).toEqual(before);
    // a changed distillation setting is not silently mixed with the finished rounds
    const changed = await cli(['run', ...tinyArgs(d, ['--set', 'distill.lr=0.01'])]);
    expect(changed.code).toBe(2);
    expect(changed.err).toMatch(/student-4\.ckpt was made with a different recipe \(differs at: distill\.lr\)/);
  });

  test('a NaN loss stops the run with a clear error and leaves the last good checkpoint intact', async () => {
    const d = tmp();
    const r = await cli(['run', ...tinyArgs(d, ['--set', 'train.lr=1e6', '--set', 'train.warmup=0', '--set', 'train.checkpoint_every=1'])]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/teacher \(8 steps\): the loss became (NaN|Infinity|-Infinity) at step \d+; stopped/);
    expect(r.err).toMatch(/last good checkpoint is .*progress\.ckpt \(unchanged\)/);
    const step = Number(/at step (\d+)/.exec(r.err)![1]);
    const ck = loadCheckpoint<{ step: number }>(join(d, 'run', 'checkpoints', 'progress.ckpt'));
    // update `step` computed its loss with the weights after step − 1 updates, which are bad; the
    // checkpoint holds the last weights that gave a finite loss: after step − 2 updates
    expect(ck.meta.step).toBe(step - 2);
    for (const [, t] of ck.tensors) for (const v of t.data) expect(Number.isFinite(v)).toBe(true);
  });
});
