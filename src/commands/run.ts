/** `halfstep run | train | distill | eval RECIPE`: the whole job or one stage of it. */
import type { Command } from 'commander';
import { runAll, runDistill, runEval, runTrain } from '../pipeline.js';
import { comparisonTable, type ReportJson } from '../eval/report.js';
import type { Job } from '../stage.js';
import { jobFrom, withRunOptions, type CliContext, type RunOptions } from './common.js';

/** What each command runs, and what it prints on stdout when done. */
const STAGES: { name: string; description: string; run: (job: Job) => Promise<string> }[] = [
  { name: 'run', description: 'train the teacher, distill it round by round, evaluate all, write the report', run: async (job) => reportSummary(job, await runAll(job)) },
  { name: 'train', description: 'train the teacher only', run: async (job) => `teacher: ${(await runTrain(job)).path}` },
  {
    name: 'distill',
    description: 'distill the trained teacher from start_steps down to end_steps',
    run: async (job) => (await runDistill(job)).students.map((s) => `student ${s.meta.steps}: ${s.path}`).join('\n'),
  },
  { name: 'eval', description: 'evaluate the teacher and every student; write the report', run: async (job) => reportSummary(job, await runEval(job)) },
];

function reportSummary(job: Job, report: ReportJson): string {
  return `${comparisonTable(report)}\n\nreport: ${job.run.file('report.html')}`;
}

export function registerRunCommands(program: Command, ctx: CliContext): void {
  for (const stage of STAGES) {
    withRunOptions(program.command(stage.name).argument('<recipe>', 'YAML recipe').description(stage.description)).action(async (recipe: string, o: RunOptions) => {
      const { job, done } = await jobFrom(recipe, o, ctx);
      try {
        ctx.io.out(`${await stage.run(job)}\n`);
      } finally {
        done();
      }
    });
  }
}
