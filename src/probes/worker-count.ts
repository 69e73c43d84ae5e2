import { queryMaster } from '../control/client.js';
import { sendSignal } from '../process/alive.js';
import { WORKER_COUNT_ACK_MS } from '../wait/timeouts.js';
import { poll } from '../wait/wait.js';

/**
 * Brings a master's worker count to `target` with the seed's signals: TTIN for one more, TTOU
 * for one fewer, one at a time, each acknowledged (its status says the new count) before the
 * next is sent: signals of one kind sent together may arrive as one. Resolves once the count is
 * set, not once the workers are ready or gone.
 */
export async function setWorkerCount(
  root: string,
  pid: number,
  target: number,
  { signal }: { signal?: AbortSignal | undefined } = {},
): Promise<void> {
  for (;;) {
    const status = await queryMaster(root, pid);
    if (status === undefined) throw new Error(`master ${pid} does not answer`);
    const from = status.desiredWorkers;
    if (from === target) return;
    const unix = from < target ? 'SIGTTIN' : 'SIGTTOU';
    if (!sendSignal(pid, unix)) throw new Error(`master ${pid} is gone`);
    await poll(
      async () => {
        const now = await queryMaster(root, pid);
        return now === undefined || now.desiredWorkers !== from ? true : undefined;
      },
      WORKER_COUNT_ACK_MS,
      () =>
        new Error(
          `master ${pid} did not change its worker count after ${unix.slice(3)} (still ${from})`,
        ),
      { signal },
    );
  }
}

/** Resolves once `pid` has at least `count` ready workers, failing after `timeoutMs` (or at `signal`). */
export async function waitReadyWorkers(
  root: string,
  pid: number,
  count: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  await poll(
    async () => {
      const status = await queryMaster(root, pid);
      if (status === undefined) throw new Error(`master ${pid} stopped answering`);
      const ready = status.workers.filter((w) => w.state === 'ready').length;
      return ready >= count ? true : undefined;
    },
    timeoutMs,
    () =>
      new Error(`master ${pid} did not have ${count} ready workers within ${timeoutMs / 1000} s`),
    { signal },
  );
}
