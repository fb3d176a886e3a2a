/** Where a run keeps its files. One folder per run: the resolved recipe, checkpoints, the report. */
import { join } from 'node:path';

export class RunDir {
  constructor(readonly root: string) {}
  get recipe(): string {
    return join(this.root, 'recipe.yaml');
  }
  get teacher(): string {
    return join(this.root, 'checkpoints', 'teacher.ckpt');
  }
  student(steps: number): string {
    return join(this.root, 'checkpoints', `student-${steps}.ckpt`);
  }
  /** The resumable state of the stage in progress (periodic and on Ctrl-C). */
  get progress(): string {
    return join(this.root, 'checkpoints', 'progress.ckpt');
  }
  /** ONNX exports of the students (`export.onnx` in the recipe). */
  get onnx(): string {
    return join(this.root, 'onnx');
  }
  get figures(): string {
    return join(this.root, 'figures');
  }
  file(name: string): string {
    return join(this.root, name);
  }
}
