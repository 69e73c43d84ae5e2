/**
 * `npm run bench:idle`: what one switch does to mostly idle kept-alive clients (issue 26, docs/
 * connection-moves.md). For each count of clients (BENCH_IDLE_SIZES, default 1000,5000,10000)
 * and each server (prefork moving connections, prefork `--no-move-connections`, `pm2 reload`,
 * a graceful restart of Node's cluster module), in one run: the clients' reconnects and failed
 * requests through one switch, the connections carried over to the new release without a
 * reconnect, the p99 of their requests through the switch ÷ steady, and how long the switch
 * took. Numbers, not assertions; docs/benchmarks.md holds the last recorded run.
 */
import os from 'node:os';
import { type IdleClients, startIdleClients } from '../helpers/idle-clients.js';
import { ClusterRig } from './rigs/cluster-rig.js';
import { Pm2Rig } from './rigs/pm2-rig.js';
import { PreforkRig } from './rigs/prefork-rig.js';
import { type Rig, sleep } from './rigs/rig.js';

const SIZES = (process.env.BENCH_IDLE_SIZES ?? '1000,5000,10000').split(',').map(Number);
const WORKERS = os.availableParallelism();
/** How long the clients run before the switch: their steady latency. */
const STEADY_MS = 5000;
/** After the switch: every client (waits of 0–3 s) sends again, on its connection or a new one. */
const AFTER_MS = 5000;

interface Row {
  server: string;
  clients: number;
  reconnects: number;
  failed: number;
  carriedOver: number;
  steadyP99: number;
  switchP99: number;
  switchMax: number;
  switchMs: number;
  late: number;
  firstFailures: string[];
  /** prefork: what the old master's drains did with the connections, and the deploy's steps. */
  drained?: Record<string, number> | undefined;
  steps?: Record<string, number> | undefined;
}

/** The servers, each made fresh for a round. */
const servers: { name: string; make: () => Rig }[] = [
  { name: 'prefork', make: () => new PreforkRig() },
  {
    name: 'prefork --no-move-connections',
    make: () => new PreforkRig(0, ['--no-move-connections']),
  },
  { name: 'pm2', make: () => new Pm2Rig() },
  { name: 'cluster', make: () => new ClusterRig() },
];

async function round(make: () => Rig, count: number): Promise<Row> {
  const rig = make();
  let clients: IdleClients | undefined;
  try {
    await rig.start(WORKERS);
    clients = await startIdleClients(rig.url, count);
    await sleep(STEADY_MS);
    const before = await clients.report();
    const steadyFrom = Date.now() - STEADY_MS + 1000;
    const from = Date.now();
    const [start, end] = await rig.replaceOnce();
    const to = Date.now();
    await sleep(AFTER_MS);
    const steady = await clients.latency(steadyFrom, from);
    const through = await clients.latency(from, to + AFTER_MS);
    const after = await clients.stop();
    clients = undefined;
    const deploy = rig instanceof PreforkRig ? rig.history.at(-1) : undefined;
    if (deploy?.failed !== undefined) {
      throw new Error(`${rig.name}: the deploy failed: ${deploy.failed}`);
    }
    return {
      server: rig.name,
      clients: count,
      reconnects: after.opened - before.opened,
      failed: after.failed - before.failed,
      carriedOver: after.carriedOver,
      steadyP99: steady.p99Ms,
      switchP99: through.p99Ms,
      switchMax: through.maxMs,
      switchMs: Math.round(end - start),
      late: after.late,
      firstFailures: after.failures.slice(0, 3),
      drained: deploy?.drained,
      steps: deploy?.steps,
    };
  } finally {
    await clients?.stop().catch(() => {});
    await rig.stop().catch(() => {});
  }
}

/** BENCH_IDLE_SERVERS (a comma-separated list of the names above) runs only those. */
const ONLY = process.env.BENCH_IDLE_SERVERS?.split(',');

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const count of SIZES) {
    for (const server of servers.filter((s) => ONLY === undefined || ONLY.includes(s.name))) {
      const row = await round(server.make, count);
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }
  const lines = [
    '| clients | server | reconnected | failed requests | carried over | p99 through the switch ÷ steady | switch took |',
    '|---:|---|---:|---:|---:|---|---:|',
    ...rows.map(
      (r) =>
        `| ${r.clients} | ${r.server} | ${r.reconnects} | ${r.failed} | ${r.carriedOver} | ${(r.switchP99 / r.steadyP99).toFixed(1)} (${r.switchP99.toFixed(1)} ÷ ${r.steadyP99.toFixed(1)} ms; max ${r.switchMax.toFixed(0)} ms) | ${(r.switchMs / 1000).toFixed(1)} s |`,
    ),
  ];
  const late = rows.filter((r) => r.late > 0);
  process.stdout.write(
    `${WORKERS} workers; each client waits 0–3 s between requests on its own kept-alive connection.\n\n${lines.join('\n')}\n`,
  );
  for (const r of late) {
    process.stdout.write(
      `\n${r.server} at ${r.clients}: ${r.late} requests sent ≥ 4.5 s after the previous answer (the clients' own lag; near Node's 5 s keep-alive timeout)\n`,
    );
  }
  for (const r of rows.filter((row) => row.drained !== undefined)) {
    const steps = Object.entries(r.steps ?? {})
      .map(([step, ms]) => `${step} ${(ms / 1000).toFixed(1)} s`)
      .join(', ');
    process.stdout.write(
      `\n${r.server} at ${r.clients}: the old master's connections ${JSON.stringify(r.drained)}; steps: ${steps}\n`,
    );
  }
  for (const r of rows.filter((row) => row.firstFailures.length > 0)) {
    process.stdout.write(
      `\n${r.server} at ${r.clients}, first failures: ${r.firstFailures.join('; ')}\n`,
    );
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
