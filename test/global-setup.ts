// Builds the CLI bundle once so that tests can also run the real `halfstep` binary in a child process.
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  execFileSync(process.execPath, ['scripts/build.mjs', 'src/cli.ts'], { stdio: 'inherit' });
}
