import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { WorkerIdentity } from '../worker-kind/worker-identity.js';

/**
 * The directory of a master's notify sockets. Normally `.prefork/` itself (owner-only, so only
 * this user can send to them). Workers running as another user (`--user`) cannot reach into
 * `.prefork/`, so they get a fresh directory under the temporary directory, mode 0700 and owned
 * by that user: only that user (and root, the master) can send. It is made when the first exec
 * worker needs it and removed at the master's exit.
 */
export class NotifyDir {
  private made: string | undefined;

  constructor(
    private readonly stateDir: string,
    private readonly identity: WorkerIdentity | undefined,
  ) {}

  /** The directory, made on first use. */
  path(): string {
    if (this.identity === undefined) return this.stateDir;
    if (this.made === undefined) {
      const dir = mkdtempSync(join(tmpdir(), 'prefork-notify-'));
      chownSync(dir, this.identity.uid, this.identity.gid);
      this.made = dir;
    }
    return this.made;
  }

  /** Removes the directory this master made, if any (its sockets went with their workers). */
  remove(): void {
    if (this.made !== undefined) rmSync(this.made, { recursive: true, force: true });
    this.made = undefined;
  }
}
