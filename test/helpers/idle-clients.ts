import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import type { Latency, LatencyAsk, SwarmReport } from './idle-swarm.js';
import { track, waitFor } from './processes.js';
import { REPO } from './repo.js';

export type { Latency, SwarmReport } from './idle-swarm.js';

/** The swarm script, compiled by `npm run build:tools` (part of `npm test`). */
const SWARM = join(REPO, 'test/.build/test/helpers/idle-swarm.js');

/** A running swarm of mostly idle kept-alive clients (`idle-swarm.ts`), in its own process. */
export interface IdleClients {
  /** What it saw so far. */
  report(): Promise<SwarmReport>;
  /** The latency of the answered requests sent in `[from, to]` (`Date.now()` ms). */
  latency(from: number, to: number): Promise<Latency>;
  /** Stops every client once its request in flight is answered; the final report. */
  stop(): Promise<SwarmReport>;
}

/**
 * Starts `count` clients against `url`, each waiting 0..`maxWaitMs` between its requests, and
 * resolves once every client has had its first answer.
 */
export async function startIdleClients(
  url: string,
  count: number,
  options: { maxWaitMs?: number; ca?: string } = {},
): Promise<IdleClients> {
  const args = [url, String(count), String(options.maxWaitMs ?? 3000)];
  if (options.ca !== undefined) args.push(options.ca);
  const child: ChildProcess = fork(SWARM, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  track(child.pid);
  let last: SwarmReport | undefined;
  let latest: Latency | undefined;
  let exited = false;
  child.on('message', (message: SwarmReport | Latency) => {
    if (message.type === 'latency') latest = message;
    else last = message;
  });
  child.on('exit', () => {
    exited = true;
  });
  const ask = async (): Promise<SwarmReport> => {
    const before = last;
    child.send('report');
    await waitFor('a report from the client swarm', () => exited || last !== before, 30_000);
    if (last === undefined) throw new Error('the client swarm exited without a report');
    return last;
  };
  await waitFor(
    `${count} clients connected`,
    async () => {
      const report = await ask();
      return report.started === count && report.requests + report.failed >= count;
    },
    120_000,
  );
  return {
    report: ask,
    latency: async (from, to) => {
      latest = undefined;
      child.send({ type: 'latency', from, to } satisfies LatencyAsk);
      await waitFor(
        'latencies from the client swarm',
        () => exited || latest !== undefined,
        30_000,
      );
      if (latest === undefined) throw new Error('the client swarm exited without latencies');
      return latest;
    },
    stop: async () => {
      const before = last;
      child.send('stop');
      await waitFor('the client swarm to stop', () => exited && last !== before, 60_000);
      if (last === undefined) throw new Error('the client swarm exited without a report');
      return last;
    },
  };
}
