/** `halfstep run | train | distill | eval RECIPE`: the whole job or one stage of it. */
import type { Command } from 'commander';
import { runAll, runDistill, runEval, runTrain } from '../pipeline.js';
import { comparisonTable } from '../eval/report.js';
import { jobFrom, withRunOptions, type CliContext, type RunOptions } from './common.js';

export function registerRunCommands(program: Command, ctx: CliContext): void {
  withRunOptions(program.command('run').argument('<recipe>', 'YAML recipe').description('train the teacher, distill it round by round, evaluate all, write the report')).action(
    async (recipe: string, o: RunOptions) => {
      const { job, done } = await jobFrom(recipe, o, ctx);
      try {
        const report = await runAll(job);
        ctx.io.out(`${comparisonTable(report)}\n\nreport: ${job.run.file('report.html')}\n`);
      } finally {
        done();
      }
    },
  );
  withRunOptions(program.command('train').argument('<recipe>', 'YAML recipe').description('train the teacher only')).action(async (recipe: string, o: RunOptions) => {
    const { job, done } = await jobFrom(recipe, o, ctx);
    try {
      const t = await runTrain(job);
      ctx.io.out(`teacher: ${t.path}\n`);
    } finally {
      done();
    }
  });
  withRunOptions(program.command('distill').argument('<recipe>', 'YAML recipe').description('distill the trained teacher from start_steps down to end_steps')).action(
    async (recipe: string, o: RunOptions) => {
      const { job, done } = await jobFrom(recipe, o, ctx);
      try {
        const { students } = await runDistill(job);
        ctx.io.out(students.map((s) => `student ${s.meta.steps}: ${s.path}`).join('\n') + '\n');
      } finally {
        done();
      }
    },
  );
  withRunOptions(program.command('eval').argument('<recipe>', 'YAML recipe').description('evaluate the teacher and every student; write the report')).action(
    async (recipe: string, o: RunOptions) => {
      const { job, done } = await jobFrom(recipe, o, ctx);
      try {
        const report = await runEval(job);
        ctx.io.out(`${comparisonTable(report)}\n\nreport: ${job.run.file('report.html')}\n`);
      } finally {
        done();
      }
    },
  );
}
