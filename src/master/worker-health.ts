import type { WorkerHealth } from '../control/schema.js';
import type { MasterMessage, WorkerHealthReply } from '../protocol/ipc.js';
import type { WorkerRecord } from '../worker-kind/worker-record.js';

/** How long a worker's app has to answer a health check once the request has reached it. */
export const HEALTH_ANSWER_MS = 3000;
/**
 * How long past the worker's own bounds the master waits for its answer: IPC both ways on a
 * busy machine. A worker that cannot answer at all has stopped heartbeating and is killed
 * (`--timeout`), which ends its check sooner; this only guards against a lost message.
 */
const ANSWER_GRACE_MS = 5000;

/** The bounds of one check (see `src/worker/self-check.ts` for what each one times). */
export interface CheckBounds {
  /** The app's own answer, from the moment the request reaches it. */
  answerMs: number;
  /** A busy worker getting the request to the app: the heartbeat timeout. */
  reachMs: number;
}

interface PendingCheck {
  pid: number;
  settle: (health: WorkerHealth) => void;
}

/**
 * The health checks a master has asked its workers for (control request `health`), matched to
 * their answers by id. Every check ends: with the worker's answer, with its exit, or with a
 * timeout — a hung worker never hangs the caller.
 */
export class WorkerHealthChecks {
  private nextId = 1;
  private readonly pending = new Map<number, PendingCheck>();

  /** Asks `worker` to GET `path` from its own app within `bounds`. */
  ask(worker: WorkerRecord, path: string, bounds: CheckBounds): Promise<WorkerHealth> {
    const timeoutMs = bounds.reachMs + bounds.answerMs + ANSWER_GRACE_MS;
    const id = this.nextId++;
    const { pid } = worker;
    return new Promise((resolve) => {
      const settle = (health: WorkerHealth) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(health);
      };
      const failed = (error: string) => settle({ pid, status: null, error });
      const timer = setTimeout(() => failed(`no answer within ${timeoutMs} ms`), timeoutMs);
      timer.unref();
      this.pending.set(id, { pid, settle });
      const message: MasterMessage = { type: 'health-check', id, path, ...bounds };
      if (worker.process === undefined) {
        failed('an exec worker has no channel to be asked on');
        return;
      }
      try {
        worker.process.send(message, (error) => {
          if (error) failed(`cannot reach it: ${error.message}`);
        });
      } catch (error) {
        failed(`cannot reach it: ${(error as Error).message}`);
      }
    });
  }

  /** A worker answered a check. */
  answer(pid: number, reply: WorkerHealthReply): void {
    const check = this.pending.get(reply.id);
    if (check?.pid === pid) check.settle({ pid, status: reply.status, error: reply.error });
  }

  /** A worker exited: its checks end with that. */
  workerExited(pid: number): void {
    for (const check of [...this.pending.values()]) {
      if (check.pid === pid)
        check.settle({ pid, status: null, error: 'it exited during the check' });
    }
  }
}
