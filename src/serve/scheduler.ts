/**
 * The request scheduler of `halfstep serve`: one queue ("lane") per model. Requests for the same
 * lane are merged into one batch of up to `maxBatchSize` samples, or whatever has arrived once the
 * oldest request has waited `maxWaitMs`; each lane runs one batch at a time and different lanes run
 * concurrently. The queue is bounded (QueueFullError, with a Retry-After estimate) and every request
 * has a deadline (RequestTimeoutError) covering its wait and its run.
 *
 * Pure: no I/O and no timers of its own. The runner (what executes a batch) and the clock are
 * injected, so tests drive it with a fake clock and a fake runner.
 */
import { QueueFullError, RequestTimeoutError, ShuttingDownError } from '../errors.js';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, ms),
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface SchedulerOptions {
  /** Largest batch, in samples (a request of n samples counts n). A request larger than this runs alone. */
  maxBatchSize: number;
  /** How long the oldest waiting request of an idle lane may wait for others to join its batch. */
  maxWaitMs: number;
  /** Requests waiting (not yet running), over all lanes, before new ones are refused. */
  maxQueue: number;
  /** Per-request deadline from submission, waiting and running together. */
  timeoutMs: number;
  /** false: every request runs as a batch of its own. */
  batching: boolean;
}

/**
 * maxWaitMs 0: an idle lane runs a request at once, and the requests that arrive while a batch runs
 * form the next batch. On the CPU that measured best at every concurrency (docs/serve.md: a 2 ms
 * wait cut throughput at concurrency 1 by 5–7× and gained nothing at 64). Raise it where a batch of
 * one costs nearly as much as a full batch (a GPU), so that batches fill under light load.
 */
export const SCHEDULER_DEFAULTS: SchedulerOptions = { maxBatchSize: 64, maxWaitMs: 0, maxQueue: 256, timeoutMs: 30_000, batching: true };

/** Runs one batch of a lane: one output per item, in order. */
export type BatchRunner<I, O> = (lane: string, items: I[]) => Promise<O[]>;

/** What a finished request learns about how it was served. */
export interface Served<O> {
  output: O;
  /** Time from submission to the start of its batch. */
  queuedMs: number;
  /** Time its batch took to run. */
  runMs: number;
  /** Samples in its batch. */
  batchSize: number;
  /** Requests in its batch. */
  batchRequests: number;
}

/** Reported once per batch run (successful or not). */
export interface BatchEvent {
  lane: string;
  size: number;
  requests: number;
  runMs: number;
  ok: boolean;
}

interface Entry<I, O> {
  item: I;
  size: number;
  submittedAt: number;
  state: 'queued' | 'running' | 'done';
  timer: unknown;
  resolve: (s: Served<O>) => void;
  reject: (e: Error) => void;
}

interface Lane<I, O> {
  queue: Entry<I, O>[];
  busy: boolean;
  waitTimer: unknown;
  /** Moving average of batch run time, for Retry-After. */
  avgRunMs: number;
}

export class Scheduler<I, O> {
  private readonly lanes = new Map<string, Lane<I, O>>();
  private queued = 0;
  private running = 0;
  private draining = false;
  private drained: (() => void)[] = [];

  constructor(
    private readonly runner: BatchRunner<I, O>,
    readonly options: SchedulerOptions = SCHEDULER_DEFAULTS,
    private readonly clock: Clock = systemClock,
    private readonly onBatch: (e: BatchEvent) => void = () => {},
  ) {
    const o = options;
    for (const [k, min] of [['maxBatchSize', 1], ['maxQueue', 1], ['timeoutMs', 1], ['maxWaitMs', 0]] as const) {
      if (!Number.isFinite(o[k]) || o[k] < min) throw new RangeError(`scheduler: ${k} must be ≥ ${min}; got ${o[k]}`);
    }
  }

  /**
   * Queue a request of `size` samples for `lane`. Rejects with QueueFullError at once when the queue
   * is full, ShuttingDownError once drain() was called, RequestTimeoutError at the deadline, or the
   * runner's error.
   */
  submit(lane: string, item: I, size: number): Promise<Served<O>> {
    if (this.draining) return Promise.reject(new ShuttingDownError());
    if (this.queued >= this.options.maxQueue) return Promise.reject(new QueueFullError(this.queued, this.retryAfterSeconds()));
    const l = this.lane(lane);
    return new Promise<Served<O>>((resolve, reject) => {
      const e: Entry<I, O> = { item, size, submittedAt: this.clock.now(), state: 'queued', timer: null, resolve, reject };
      e.timer = this.clock.setTimer(() => this.expire(l, e), this.options.timeoutMs);
      l.queue.push(e);
      this.queued += 1;
      this.pump(lane, l);
    });
  }

  /** Requests waiting (not running), in one lane or in all. */
  depth(lane?: string): number {
    if (lane === undefined) return this.queued;
    return this.lanes.get(lane)?.queue.length ?? 0;
  }

  /** Batches running now. */
  inFlight(): number {
    return this.running;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Stop taking requests (new ones get ShuttingDownError), run what is queued without waiting for
   * batches to fill, and resolve once every request has been answered.
   */
  drain(): Promise<void> {
    this.draining = true;
    for (const [name, l] of this.lanes) this.pump(name, l);
    return new Promise((resolve) => {
      this.drained.push(resolve);
      this.checkDrained();
    });
  }

  private lane(name: string): Lane<I, O> {
    let l = this.lanes.get(name);
    if (!l) {
      l = { queue: [], busy: false, waitTimer: null, avgRunMs: 0 };
      this.lanes.set(name, l);
    }
    return l;
  }

  /** An estimate of when the queue has room again: the batches ahead times their average run time. */
  private retryAfterSeconds(): number {
    let ms = 0;
    for (const l of this.lanes.values()) ms = Math.max(ms, Math.ceil(l.queue.length / this.perBatch()) * l.avgRunMs);
    return Math.min(60, Math.max(1, Math.ceil(ms / 1000)));
  }

  private perBatch(): number {
    return this.options.batching ? this.options.maxBatchSize : 1;
  }

  /** Start a batch on an idle lane if it is full, its oldest request has waited long enough, or we drain. */
  private pump(name: string, l: Lane<I, O>): void {
    if (l.busy || l.queue.length === 0) return;
    const o = this.options;
    const waited = this.clock.now() - l.queue[0]!.submittedAt;
    const samples = l.queue.reduce((s, e) => s + e.size, 0);
    const ready = !o.batching || this.draining || samples >= o.maxBatchSize || waited >= o.maxWaitMs;
    if (!ready) {
      if (l.waitTimer === null) {
        l.waitTimer = this.clock.setTimer(() => {
          l.waitTimer = null;
          this.pump(name, l);
        }, o.maxWaitMs - waited);
      }
      return;
    }
    if (l.waitTimer !== null) {
      this.clock.clearTimer(l.waitTimer);
      l.waitTimer = null;
    }
    const batch: Entry<I, O>[] = [l.queue.shift()!];
    let size = batch[0]!.size;
    if (o.batching) {
      while (l.queue.length > 0 && size + l.queue[0]!.size <= o.maxBatchSize) {
        const e = l.queue.shift()!;
        batch.push(e);
        size += e.size;
      }
    }
    this.queued -= batch.length;
    this.run(name, l, batch, size);
  }

  private run(name: string, l: Lane<I, O>, batch: Entry<I, O>[], size: number): void {
    l.busy = true;
    this.running += 1;
    const t0 = this.clock.now();
    for (const e of batch) e.state = 'running';
    let result: Promise<O[]>;
    try {
      result = this.runner(name, batch.map((e) => e.item));
    } catch (err) {
      result = Promise.reject(err);
    }
    const finish = (ok: boolean, settle: (e: Entry<I, O>, i: number) => void) => {
      const runMs = this.clock.now() - t0;
      l.avgRunMs = l.avgRunMs === 0 ? runMs : 0.8 * l.avgRunMs + 0.2 * runMs;
      batch.forEach((e, i) => {
        if (e.state === 'done') return; // timed out while running
        e.state = 'done';
        this.clock.clearTimer(e.timer);
        settle(e, i);
      });
      l.busy = false;
      this.running -= 1;
      this.onBatch({ lane: name, size, requests: batch.length, runMs, ok });
      this.pump(name, l);
      this.checkDrained();
    };
    result.then(
      (outs) => {
        if (!Array.isArray(outs) || outs.length !== batch.length) {
          const err = new Error(`batch runner returned ${Array.isArray(outs) ? outs.length : typeof outs} outputs for ${batch.length} requests`);
          finish(false, (e) => e.reject(err));
          return;
        }
        const runMs = this.clock.now() - t0;
        finish(true, (e, i) => e.resolve({ output: outs[i]!, queuedMs: t0 - e.submittedAt, runMs, batchSize: size, batchRequests: batch.length }));
      },
      (err: unknown) => finish(false, (e) => e.reject(err instanceof Error ? err : new Error(String(err)))),
    );
  }

  private expire(l: Lane<I, O>, e: Entry<I, O>): void {
    if (e.state === 'done') return;
    if (e.state === 'queued') {
      l.queue.splice(l.queue.indexOf(e), 1);
      this.queued -= 1;
    }
    e.state = 'done';
    e.reject(new RequestTimeoutError(this.options.timeoutMs));
    this.checkDrained();
  }

  private checkDrained(): void {
    if (!this.draining || this.queued > 0 || this.running > 0) return;
    const waiting = this.drained;
    this.drained = [];
    for (const f of waiting) f();
  }
}
