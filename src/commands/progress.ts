/** Renders progress events: cli-progress bars on a terminal, one-line logs otherwise, nothing with --quiet. */
import cliProgress from 'cli-progress';
import type { OnEvent, ProgressEvent } from '../events.js';

export interface Output {
  out: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
}

export const processOutput: Output = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  isTTY: Boolean(process.stderr.isTTY),
};

function duration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export function progressReporter(io: Output, quiet: boolean): OnEvent & { stop(): void } {
  let bar: cliProgress.SingleBar | null = null;
  let backend = '';
  let lastLog = 0;
  let lastPct = -1;
  const stop = () => {
    bar?.stop();
    bar = null;
  };
  const handler = (e: ProgressEvent) => {
    if (quiet) return;
    switch (e.type) {
      case 'stage-start': {
        backend = e.backend;
        stop();
        if (io.isTTY) {
          bar = new cliProgress.SingleBar(
            {
              format: `{label} [{bar}] {value}/{total} | loss {loss} | {speed} it/s | ETA {eta_formatted} | ${backend}`,
              stream: process.stderr,
              hideCursor: true,
              clearOnComplete: false,
              etaBuffer: 50,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.total, e.startAt, { label: e.label, loss: '-', speed: '-' });
        } else {
          io.err(`[${e.label}] start: ${e.total} ${e.unit ?? 'updates'}${e.startAt ? `, resuming at ${e.startAt}` : ''}, backend ${e.backend}\n`);
        }
        lastLog = performance.now();
        lastPct = -1;
        break;
      }
      case 'step': {
        const loss = Number.isNaN(e.loss) ? '-' : e.loss.toPrecision(4);
        if (bar) {
          bar.update(e.step, { label: e.label, loss, speed: e.itPerSec ? e.itPerSec.toFixed(1) : '-' });
        } else {
          const pct = Math.floor((10 * e.step) / e.total);
          const now = performance.now();
          if (pct !== lastPct || now - lastLog > 30000 || e.step === e.total) {
            lastPct = pct;
            lastLog = now;
            const eta = e.itPerSec > 0 ? duration((e.total - e.step) / e.itPerSec) : '?';
            io.err(`[${e.label}] ${e.step}/${e.total}${e.stage === 'eval' ? '' : ` loss ${loss} lr ${e.lr.toExponential(2)} ${e.itPerSec.toFixed(1)} it/s eta ${eta}`} backend=${backend}\n`);
          }
        }
        break;
      }
      case 'checkpoint':
        if (!bar) io.err(`[${e.stage}] checkpoint ${e.path} at update ${e.step}\n`);
        break;
      case 'stage-end':
        stop();
        io.err(`[${e.label}] done in ${duration(e.seconds)}: ${e.summary}\n`);
        break;
      case 'info':
        stop();
        io.err(`${e.message}\n`);
        break;
    }
  };
  return Object.assign(handler, { stop });
}
