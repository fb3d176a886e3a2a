/** Charts as Vega-Lite specs, rendered headless to SVG by vega and rasterised to PNG by sharp. */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { optionalSharp } from '../native.js';

export interface Rendered {
  svg: string;
  /** null where the native sharp package is not installed (the SVG is still there). */
  png: Buffer | null;
}


export async function render(spec: TopLevelSpec, scale = 2): Promise<Rendered> {
  const compiled = vl.compile({ config: { font: 'DejaVu Sans', view: { stroke: '#ddd' } }, ...spec } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const sharp = optionalSharp();
  const png = sharp ? await sharp(Buffer.from(svg), { density: 72 * scale }).png().toBuffer() : null;
  return { svg, png };
}

/** A scatter plot of 2D points (the first two coordinates), on fixed axes so that panels compare. */
export function scatterSpec(points: Float32Array, d: number, title: string, range: [number, number], color = '#4c78a8', max = 2000): TopLevelSpec {
  const n = Math.min(points.length / d, max);
  const values = Array.from({ length: n }, (_, i) => ({ x: round(points[i * d]!), y: round(points[i * d + 1]!) }));
  const dom = [range[0], range[1]];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, fontSize: 12 },
    width: 220,
    height: 220,
    data: { values },
    mark: { type: 'circle', size: 4, opacity: 0.5, color },
    encoding: {
      x: { field: 'x', type: 'quantitative', scale: { domain: dom, clamp: true }, axis: { title: null, tickCount: 5 } },
      y: { field: 'y', type: 'quantitative', scale: { domain: dom, clamp: true }, axis: { title: null, tickCount: 5 } },
    },
  } as TopLevelSpec;
}

export interface MetricPoint {
  sampler: string;
  steps: number;
  metric: string;
  value: number;
}

/** One panel per metric: value against sampling steps (log2 axis), one line per sampler. */
export function metricsSpec(points: MetricPoint[], metrics: string[], title: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    data: { values: points.map((p) => ({ ...p, value: p.value })) },
    facet: { column: { field: 'metric', type: 'nominal', sort: metrics, title: null } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 220,
      height: 180,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'steps', type: 'quantitative', scale: { type: 'log', base: 2 }, axis: { values: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], format: 'd' }, title: 'sampling steps' },
        y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: null },
        color: { field: 'sampler', type: 'nominal', scale: { domain: ['teacher DDIM', 'student'], range: ['#e45756', '#4c78a8'] }, title: null },
      },
    },
  } as TopLevelSpec;
}

/** Training loss against update, one panel per stage. */
export function lossSpec(curves: { stage: string; step: number; loss: number }[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: 'training loss',
    data: { values: curves },
    facet: { field: 'stage', type: 'nominal', columns: 4, title: null, sort: null },
    resolve: { scale: { x: 'independent', y: 'independent' } },
    spec: {
      width: 160,
      height: 110,
      mark: { type: 'line', strokeWidth: 1 },
      encoding: {
        x: { field: 'step', type: 'quantitative', title: 'update' },
        y: { field: 'loss', type: 'quantitative', scale: { type: 'log' }, title: null },
      },
    },
  } as TopLevelSpec;
}

function round(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
