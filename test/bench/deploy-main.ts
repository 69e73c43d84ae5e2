/**
 * `npm run bench:deploy`: the deploy-latency section of `npm run bench` alone (p99 while
 * replacing ÷ steady p99 for prefork's plain and canary deploys, PM2 and the cluster module,
 * with a chart per server). Prints a Markdown table; the charts go to `BENCH_CHARTS`
 * (default `docs/bench`).
 */
import os from 'node:os';
import {
  deployLatency,
  LATENCY_CONNECTIONS,
  latencyTable,
  preforkContenders,
} from './deploy-latency.js';
import { ensureHey } from './load.js';
import { ClusterRig } from './rigs/cluster-rig.js';
import { Pm2Rig } from './rigs/pm2-rig.js';
import { PreforkRig } from './rigs/prefork-rig.js';
import type { Rig } from './rigs/rig.js';

const WORKERS = os.availableParallelism();
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function main(): Promise<void> {
  const hey = ensureHey();
  if (hey === undefined) {
    throw new Error(
      'hey is not installed and cannot be here: apt-get install hey (Debian), then run again',
    );
  }
  const rigs: Rig[] = [];
  try {
    const prefork = new PreforkRig();
    const pm2 = new Pm2Rig();
    const cluster = new ClusterRig();
    for (const rig of [prefork, pm2, cluster]) {
      rigs.push(rig);
      await rig.start(WORKERS);
    }
    const results = await deployLatency(
      [
        ...preforkContenders(prefork),
        { name: pm2.name, slug: 'pm2', rig: pm2, replace: () => pm2.replaceOnce() },
        { name: cluster.name, slug: 'cluster', rig: cluster, replace: () => cluster.replaceOnce() },
      ],
      ROUNDS,
      process.env.BENCH_CHARTS ?? 'docs/bench',
    );
    process.stdout.write(
      `${WORKERS} workers, hey ${hey} with ${LATENCY_CONNECTIONS} kept-alive connections, ${ROUNDS} rounds.\n\n${latencyTable(results).join('\n')}\n`,
    );
  } finally {
    for (const rig of rigs) await rig.stop().catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
