/** Typed errors. Library code throws these; only cli.ts prints them and sets the exit code. */
export class HalfstepError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = new.target.name;
  }
}

/** A recipe key with a wrong type, an unknown name or an impossible value. `path` is e.g. "distill.start_steps". */
export class RecipeError extends HalfstepError {
  constructor(readonly path: string, message: string, readonly file?: string) {
    super(`${file ? `${file}: ` : ''}${path ? `${path}: ` : ''}${message}`, 2);
  }
}

/** A bad command-line usage that commander cannot catch (e.g. a file that does not exist). */
export class UsageError extends HalfstepError {
  constructor(message: string) {
    super(message, 2);
  }
}

export class CheckpointError extends HalfstepError {}
export class DatasetError extends HalfstepError {}
export class BackendUnavailableError extends HalfstepError {}

/** The loss became NaN or ±Inf; the last good checkpoint is left as it was. */
export class NonFiniteLossError extends HalfstepError {
  constructor(readonly stage: string, readonly step: number, readonly value: number, readonly lastCheckpoint: string | null) {
    super(
      `${stage}: the loss became ${value} at step ${step}; stopped. ` +
        (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint} (unchanged). ` : 'No checkpoint was written yet. ') +
        'Try a lower learning rate or a smaller grad_clip.',
    );
  }
}

/** Ctrl-C (SIGINT) or SIGTERM during a long stage: the state was saved and the run can be resumed. */
export class InterruptedError extends HalfstepError {
  constructor(readonly checkpoint: string | null) {
    super(`interrupted; ${checkpoint ? `state saved to ${checkpoint}; continue with --resume` : 'the finished stages are saved; run again to continue'}`, 130);
  }
}

/** A model that cannot be written as ONNX: an op with no mapping, a network without exportOnnx, a bad option. */
export class ExportError extends HalfstepError {}

/** onnxruntime's outputs differ from tfjs's beyond the tolerance; nothing was written for that graph. */
export class ParityError extends ExportError {
  constructor(
    message: string,
    readonly worst: { output: string; batch: number; index: number[]; maxAbs: number; onnx: number; reference: number },
  ) {
    super(message);
  }
}

/**
 * `halfstep serve`: a request the server turns away or cannot finish. `status` is the HTTP status it
 * is answered with; `field` names the request field at fault, where there is one.
 */
export class ServeError extends HalfstepError {
  constructor(message: string, readonly status: number, readonly field?: string) {
    super(message);
  }
}

/** A request that is well-formed JSON but asks for something this server cannot do (HTTP 400). */
export class RequestError extends ServeError {
  constructor(field: string, message: string) {
    super(message, 400, field);
  }
}

/** The request queue is full (HTTP 503 with Retry-After). */
export class QueueFullError extends ServeError {
  constructor(readonly queued: number, readonly retryAfterSeconds: number) {
    super(`the request queue is full (${queued} waiting); retry in ${retryAfterSeconds} s`, 503);
  }
}

/** A request waited and ran longer than the per-request timeout (HTTP 504). */
export class RequestTimeoutError extends ServeError {
  constructor(readonly timeoutMs: number) {
    super(`the request did not finish within ${timeoutMs} ms`, 504);
  }
}

/** The server is draining for shutdown and takes no new work (HTTP 503). */
export class ShuttingDownError extends ServeError {
  constructor() {
    super('the server is shutting down', 503);
  }
}
