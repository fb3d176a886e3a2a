/** The report of a run: report.json (data), report.md (tables + figure links), report.html (self-contained). */
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join, relative } from 'node:path';
import { exampleSize, splitOf } from '../data/dataset.js';
import { recipeHash, recipeToYaml, type Recipe } from '../recipe.js';
import type { Job } from '../stage.js';
import type { TrainedModel } from '../train.js';
import { VERSION } from '../version.js';
import { lossSpec, metricsSpec, render, scatterSpec, type MetricPoint, type Rendered } from './charts.js';
import type { Evaluation } from './evaluate.js';
import type { MetricInfo, Metrics } from './suites.js';
import { imageGrid } from './grid.js';

export interface ReportJson {
  halfstep: string;
  created: string;
  recipe: Recipe;
  recipe_hash: string;
  dataset: { name: string; source: string; shape: number[]; range: [number, number]; train: number; heldout: number };
  backend: string;
  kernels: string;
  data_kind: 'vector' | 'image';
  /** The feature space of the image metrics (null for vector data). */
  feature_network: string | null;
  metrics: MetricInfo[];
  metric_definitions: Record<string, string>;
  rows: { sampler: 'teacher' | 'student'; steps: number; round: number; metrics: Metrics; latency_ms_per_sample: number; figure: string }[];
  /** Checks of the teacher's start_steps samples (image data: confident fraction etc.). */
  teacher_check: Record<string, number> | null;
  teacher: { updates: number; final_loss: number | null; seconds: number };
  rounds: { round: number; steps: number; updates: number; final_loss: number | null; seconds: number }[];
  figures: { metrics: string; samples: string[]; loss: string };
  eval_seconds: number;
}

const LATENCY_DEFINITION = "Wall time to draw eval.samples samples in one batch (images: batches of at most 128) at the row's step count (fastest of eval.latency_repeats), divided by eval.samples; on this run's backend.";

/** A picture of samples: a scatter plot for vectors, a grid of the first 64 for images. */
async function samplesPicture(job: Job, x: Float32Array, title: string, color: string): Promise<Rendered> {
  const shape = job.dataset.shape;
  if (shape.length === 3) return { svg: '', png: imageGrid(x, Math.min(64, x.length / exampleSize(job.dataset)), shape, job.dataset.range) };
  return render(scatterSpec(x, exampleSize(job.dataset), title, job.dataset.range, color));
}

/**
 * At most `k` of the n examples in x, evenly spaced, so that a picture of the first ones shows the
 * whole set and not the run of one class that a dataset's row order may start with.
 */
function spread(x: Float32Array, n: number, k: number): Float32Array {
  if (n <= k) return x;
  const D = x.length / n;
  const out = new Float32Array(k * D);
  for (let i = 0; i < k; i++) {
    const j = Math.floor((i * n) / k);
    out.set(x.subarray(j * D, (j + 1) * D), i * D);
  }
  return out;
}

/**
 * Save a figure as `name`.png (or `name`.svg where PNG rendering is not available) and return its
 * path relative to the run folder and an HTML element that embeds it.
 */
function saveFigure(dir: string, root: string, name: string, fig: Rendered, width?: number): { file: string; html: string } {
  if (fig.png) {
    const file = join(dir, `${name}.png`);
    writeFileSync(file, fig.png);
    if (fig.svg) writeFileSync(join(dir, `${name}.svg`), fig.svg);
    return { file: relative(root, file), html: `<img alt="${name}" src="data:image/png;base64,${fig.png.toString('base64')}"${width ? ` width="${width}"` : ''}>` };
  }
  const file = join(dir, `${name}.svg`);
  writeFileSync(file, fig.svg);
  return { file: relative(root, file), html: fig.svg };
}

export async function writeReport(job: Job, teacher: TrainedModel, students: TrainedModel[], ev: Evaluation, evalSeconds: number, kernels: string): Promise<ReportJson> {
  const rows = ev.rows;
  const metricInfo = ev.suite.metrics;
  const root = job.run.root;
  const figDir = job.run.figures;
  mkdirSync(figDir, { recursive: true });

  // Pictures: one per row (same noise in every row), metrics against steps, loss curves.
  const html: Record<string, string> = {};
  const reportRows: ReportJson['rows'] = [];
  const heldout = splitOf(job.dataset, 'heldout');
  html['data'] = saveFigure(figDir, root, 'data', await samplesPicture(job, spread(heldout.x, heldout.n, job.dataset.shape.length === 3 ? 64 : 2000), `held-out data (${heldout.n})`, '#54a24b'), 260).html;
  for (const row of rows) {
    const name = `${row.sampler}-${row.steps}`;
    const title = row.sampler === 'teacher' ? `teacher, DDIM ${row.steps} step${row.steps > 1 ? 's' : ''}` : row.round === 0 ? `student ${row.steps} (= teacher)` : `student, ${row.steps} step${row.steps > 1 ? 's' : ''}`;
    const fig = saveFigure(figDir, root, name, await samplesPicture(job, row.samples, title, row.sampler === 'teacher' ? '#e45756' : '#4c78a8'), 260);
    html[name] = fig.html;
    reportRows.push({ sampler: row.sampler, steps: row.steps, round: row.round, metrics: row.metrics, latency_ms_per_sample: row.latency_ms_per_sample, figure: fig.file });
  }
  // Zeros, negatives and nulls (the teacher compared with itself) have no place on a log axis.
  const charted = metricInfo.filter((m) => m.name !== 'kid_se');
  const label = (m: MetricInfo) => `${m.name} (${m.better} is better)`;
  const points: MetricPoint[] = rows.flatMap((r) =>
    charted
      .filter((m) => (r.metrics[m.name] ?? 0) > 0)
      .map((m) => ({ sampler: r.sampler === 'teacher' ? 'teacher DDIM' : 'student', steps: r.steps, metric: label(m), value: r.metrics[m.name]! })),
  );
  const metricsFig = await render(metricsSpec(points, charted.map(label), `${job.recipe.name}: quality against sampling steps`));
  const metricsFile = saveFigure(figDir, root, 'metrics', metricsFig).file;
  const curves = [
    ...teacher.meta.lossCurve.map((p) => ({ stage: 'teacher', ...p })),
    ...students.flatMap((s) => s.meta.lossCurve.map((p) => ({ stage: `round ${s.meta.round} (→${s.meta.steps})`, ...p }))),
  ];
  const lossFig = await render(lossSpec(curves));
  const lossFile = saveFigure(figDir, root, 'loss', lossFig).file;

  const report: ReportJson = {
    halfstep: VERSION,
    created: new Date().toISOString(),
    recipe: job.recipe,
    recipe_hash: recipeHash(job.recipe),
    dataset: {
      name: job.dataset.name,
      source: job.dataset.source,
      shape: job.dataset.shape,
      range: job.dataset.range,
      train: job.train.n,
      heldout: heldout.n,
    },
    backend: job.backend,
    kernels,
    data_kind: ev.suite.kind,
    feature_network: ev.suite.featureNetwork,
    metrics: metricInfo,
    metric_definitions: { ...Object.fromEntries(metricInfo.map((m) => [m.name, m.definition])), latency_ms_per_sample: LATENCY_DEFINITION },
    rows: reportRows,
    teacher_check: ev.teacherCheck,
    teacher: { updates: teacher.meta.total, final_loss: teacher.meta.finalLoss, seconds: teacher.meta.seconds },
    rounds: students.map((s) => ({ round: s.meta.round, steps: s.meta.steps, updates: s.meta.total, final_loss: s.meta.finalLoss, seconds: s.meta.seconds })),
    figures: { metrics: metricsFile, samples: reportRows.map((r) => r.figure), loss: lossFile },
    eval_seconds: evalSeconds,
  };
  atomicWrite(join(root, 'report.json'), JSON.stringify(report, null, 2));
  atomicWrite(join(root, 'report.md'), markdown(report));
  atomicWrite(join(root, 'report.html'), htmlReport(report, metricsFig.svg, lossFig.svg, html));
  return report;
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const fmt = (v: number | null | undefined) =>
  v === null || v === undefined ? '—' : v === 0 ? '0' : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toPrecision(3);

/** The comparison table: one line per step count with teacher-DDIM and student side by side for each metric. */
export function comparisonTable(r: ReportJson): string {
  const names = [...r.metrics.map((m) => m.name), 'ms/sample'];
  const lines = [
    `| steps | ${names.map((m) => `teacher DDIM ${m} | student ${m}`).join(' | ')} |`,
    `| ---: | ${names.map(() => '---: | ---:').join(' | ')} |`,
  ];
  const steps = [...new Set(r.rows.map((x) => x.steps))];
  for (const n of steps) {
    const t = r.rows.find((x) => x.steps === n && x.sampler === 'teacher')!;
    const s = r.rows.find((x) => x.steps === n && x.sampler === 'student')!;
    const tag = s.round === 0 ? ' (= teacher)' : '';
    const cells = r.metrics.map((m) => `${fmt(t.metrics[m.name])} | ${fmt(s.metrics[m.name])}${tag}`);
    cells.push(`${fmt(t.latency_ms_per_sample)} | ${fmt(s.latency_ms_per_sample)}`);
    lines.push(`| ${n} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function roundsTable(r: ReportJson): string {
  const lines = ['| stage | steps | updates | final loss | seconds |', '| --- | ---: | ---: | ---: | ---: |'];
  lines.push(`| teacher | ${r.recipe.distill.start_steps} | ${r.teacher.updates} | ${fmt(r.teacher.final_loss)} | ${r.teacher.seconds.toFixed(1)} |`);
  for (const x of r.rounds) lines.push(`| round ${x.round} | ${x.steps} | ${x.updates} | ${fmt(x.final_loss)} | ${x.seconds.toFixed(1)} |`);
  return lines.join('\n');
}

function markdown(r: ReportJson): string {
  return `# halfstep report: ${r.recipe.name}

Dataset **${r.dataset.name}** (${r.dataset.source}; ${r.dataset.train} train / ${r.dataset.heldout} held out, shape [${r.dataset.shape.join(', ')}]).
Backend **${r.backend}** (${r.kernels}); halfstep ${r.halfstep}; recipe hash \`${r.recipe_hash}\`; ${r.created}.

## Teacher DDIM against distilled students

${comparisonTable(r)}
${r.feature_network ? `\nFeature space of the image metrics: ${r.feature_network}\n` : ''}${r.teacher_check ? `\nTeacher check (${r.recipe.distill.start_steps}-step samples): ${Object.entries(r.teacher_check).map(([k, v]) => `${k} = ${fmt(v)}`).join(', ')}\n` : ''}
![metrics against steps](${r.figures.metrics})

## Samples

${r.rows.map((x) => `![${x.sampler} ${x.steps}](${x.figure})`).join(' ')}

## Training

${roundsTable(r)}

![loss](${r.figures.loss})

## Definitions

${Object.entries(r.metric_definitions)
  .map(([k, v]) => `- **${k}**: ${v}`)
  .join('\n')}

## Resolved recipe

\`\`\`yaml
${recipeToYaml(r.recipe)}\`\`\`
`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function mdTableToHtml(md: string): string {
  const [head, , ...body] = md.split('\n');
  const cells = (l: string) => l.split('|').slice(1, -1).map((c) => c.trim());
  return `<table><thead><tr>${cells(head!).map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead><tbody>${body
    .map((l) => `<tr>${cells(l).map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function htmlReport(r: ReportJson, metricsSvg: string, lossSvg: string, pngs: Record<string, string>): string {
  const img = (key: string, _alt: string) => `<figure>${pngs[key]}</figure>`;
  const steps = [...new Set(r.rows.map((x) => x.steps))];
  const grid = steps
    .map((n) => `<div class="pair"><h3>${n} step${n > 1 ? 's' : ''}</h3>${img(`teacher-${n}`, `teacher ${n}`)}${img(`student-${n}`, `student ${n}`)}</div>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>halfstep report: ${esc(r.recipe.name)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1200px;color:#222;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th{background:#f4f4f4}.pairs{display:flex;flex-wrap:wrap;gap:1rem}.pair{border:1px solid #eee;padding:.5rem}
.pair h3{margin:.2rem 0;font-size:1rem}figure{margin:0}pre{background:#f7f7f7;padding:1rem;overflow:auto}
dt{font-weight:600}dd{margin:0 0 .6rem 1rem}
</style></head><body>
<h1>halfstep report: ${esc(r.recipe.name)}</h1>
<p>Dataset <b>${esc(r.dataset.name)}</b> (${esc(r.dataset.source)}; ${r.dataset.train} train / ${r.dataset.heldout} held out). Backend <b>${esc(r.backend)}</b> (${esc(r.kernels)}); halfstep ${esc(r.halfstep)}; recipe hash <code>${r.recipe_hash}</code>; ${esc(r.created)}.</p>
<h2>Teacher DDIM against distilled students</h2>
${mdTableToHtml(comparisonTable(r))}
${r.feature_network ? `<p><b>Feature space of the image metrics:</b> ${esc(r.feature_network)}</p>` : ''}
${r.teacher_check ? `<p><b>Teacher check</b> (${r.recipe.distill.start_steps}-step samples): ${esc(Object.entries(r.teacher_check).map(([k, v]) => `${k} = ${fmt(v)}`).join(', '))}</p>` : ''}
${metricsSvg}
<h2>Samples (same noise in every panel)</h2>
<div class="pairs"><div class="pair"><h3>held-out data</h3>${img('data', 'held-out data')}</div>${grid}</div>
<h2>Training</h2>
${mdTableToHtml(roundsTable(r))}
${lossSvg}
<h2>Definitions</h2>
<dl>${Object.entries(r.metric_definitions)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
    .join('')}</dl>
<h2>Resolved recipe</h2>
<pre>${esc(recipeToYaml(r.recipe))}</pre>
</body></html>
`;
}
