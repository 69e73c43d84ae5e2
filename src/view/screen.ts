/**
 * `prefork top`'s screen, as lines of text no wider than the terminal: the deploy in flight,
 * then each generation (master) with its releases' workers, traffic, connections and drain.
 * Pure: the command draws what this returns (docs/live-view.md).
 */
import { P99_FLOOR_S } from '../canary/verdict.js';
import type { WorkerStatus } from '../control/schema.js';
import { addConnections, noConnections } from '../protocol/connections.js';
import { addMoves, noMoves } from '../protocol/moves.js';
import { describeConnections, describeDrained } from '../report/connections.js';
import type { FormingSide, ReleaseRate } from './rates.js';
import { releasesOf } from './rates.js';
import type { ViewDeploy, ViewMaster, ViewSnapshot } from './snapshot.js';

/** What a frame shows, and how. */
export interface Frame {
  snapshot: ViewSnapshot;
  /** Figures since the previous look (empty on the first). */
  rates: ReleaseRate[];
  /** A canary step's figures so far. */
  canary: FormingSide[];
  /** Columns of the terminal (lines are cut to it). */
  width: number;
  /** ANSI colours (off with NO_COLOR or when not a terminal). */
  color: boolean;
  paused: boolean;
  /** Shown in the title: keys, or nothing when not interactive. */
  keys: string;
}

type Paint = (text: string, style: 'bold' | 'dim' | 'green' | 'yellow' | 'red') => string;
const CODES = { bold: 1, dim: 2, red: 31, green: 32, yellow: 33 } as const;

export function ms(seconds: number | null): string {
  if (seconds === null) return '-';
  const m = seconds * 1000;
  return `${m < 10 ? m.toFixed(2) : m < 100 ? m.toFixed(1) : m.toFixed(0)} ms`;
}

export function percent(share: number | null): string {
  return share === null ? '-' : `${(share * 100).toFixed(share > 0 && share < 0.001 ? 2 : 1)}%`;
}

function describeDeploy(deploy: ViewDeploy, at: number, paint: Paint): string[] {
  const since = (iso: string) => Math.max(0, Math.round((at - Date.parse(iso)) / 1000));
  const from = deploy.previous === null ? '' : ` from ${deploy.previous}`;
  const lines = [
    paint(
      `${deploy.kind} ${deploy.release} (${deploy.version})${from}: step ${deploy.step} for ${since(deploy.stepAt)}s, ${since(deploy.startedAt)}s in`,
      'bold',
    ),
  ];
  for (const judged of deploy.canary) {
    const style = judged.verdict === 'pass' ? 'green' : 'red';
    const side = (s: { release: string; p99Ms: number | null; errorRate: number | null }) =>
      `${s.release} p99 ${s.p99Ms === null ? '-' : `${s.p99Ms.toFixed(1)} ms`} ${s.errorRate === null ? '-' : `${s.errorRate.toFixed(2)}%`} 5xx`;
    lines.push(
      `  canary step ${judged.step}/${judged.of}: ${paint(judged.verdict, style)} (${side(judged.new)}; ${side(judged.old)})`,
    );
  }
  return lines;
}

function describeForming(deploy: ViewDeploy, sides: FormingSide[]): string[] {
  if (sides.length === 0) return [];
  const judged = deploy.canary.length;
  const of = deploy.canary[0]?.of;
  const newSide = sides.find((s) => s.release === deploy.release);
  const oldSide = sides.find((s) => s.release !== deploy.release);
  const side = (s: FormingSide) =>
    `${s.release} ${s.responses} responses, p99 ${ms(s.p99)}, ${percent(s.errorShare)} 5xx`;
  // As the verdict reads it: a new p99 under the floor is not held against the old one's.
  const ratio =
    newSide?.p99 == null || oldSide?.p99 == null || oldSide.p99 <= 0
      ? ''
      : newSide.p99 < P99_FLOOR_S
        ? `, p99 under the ${P99_FLOOR_S * 1000} ms floor`
        : `, p99 ratio ${(newSide.p99 / oldSide.p99).toFixed(2)}`;
  return [
    `  canary step ${judged + 1}${of === undefined ? '' : `/${of}`} forming: ${sides.map(side).join('; ')}${ratio}`,
  ];
}

function workerStates(workers: WorkerStatus[]): string {
  const count = (state: WorkerStatus['state']) => workers.filter((w) => w.state === state).length;
  const parts = (['ready', 'booting', 'draining'] as const)
    .map((state) => [count(state), state] as const)
    .filter(([n]) => n > 0)
    .map(([n, state]) => `${n} ${state}`);
  return parts.length === 0 ? 'no workers' : parts.join(', ');
}

function describeRelease(
  master: ViewMaster,
  release: string,
  rate: ReleaseRate | undefined,
  at: number,
  paint: Paint,
): string[] {
  const workers = master.status.workers.filter((w) => w.release === release);
  const share = master.metrics?.releases.find((r) => r.release === release);
  const traffic =
    rate === undefined
      ? 'req/s -'
      : rate.rate === null
        ? 'requests not counted (exec release)'
        : `${rate.rate.toFixed(1)} req/s, ${percent(rate.errorShare)} 5xx, p99 ${ms(rate.p99)}`;
  const errors = rate?.errorShare !== null && rate?.errorShare !== undefined && rate.errorShare > 0;
  const lines = [
    `  [${release}] ${workerStates(workers)}; ${errors ? paint(traffic, 'red') : traffic}`,
  ];
  const counted = workers.filter((w) => w.connections !== undefined);
  if (counted.length > 0) {
    const open = counted.reduce(
      (sum, w) => addConnections(sum, w.connections ?? noConnections()),
      noConnections(),
    );
    lines.push(`    connections ${describeConnections(open)}`);
  }
  const draining = workers.filter((w) => w.state === 'draining');
  if (draining.length > 0) {
    const deadlines = draining.flatMap((w) =>
      w.drainDeadline === undefined ? [] : [w.drainDeadline],
    );
    const left = draining.reduce(
      (sum, w) => addConnections(sum, w.connections ?? noConnections()),
      noConnections(),
    );
    const closeIn =
      deadlines.length === 0
        ? ''
        : `, deadline in ${Math.max(0, Math.ceil((Math.max(...deadlines) - at) / 1000))}s`;
    const drained = describeDrained(
      draining.reduce((sum, w) => addMoves(sum, w.drained ?? noMoves()), noMoves()),
    );
    lines.push(
      paint(
        `    draining: ${draining.length} worker${draining.length === 1 ? '' : 's'}, ${describeConnections(left)} left${closeIn}${drained === '' ? '' : `; ${drained}`}`,
        'yellow',
      ),
    );
  }
  if (share !== undefined && workers.length === 0 && share.figures !== undefined) {
    lines[0] = paint(lines[0] ?? '', 'dim');
  }
  return lines;
}

function describeMaster(
  master: ViewMaster,
  rates: ReleaseRate[],
  at: number,
  paint: Paint,
): string[] {
  const s = master.status;
  const style = s.state === 'running' ? 'green' : s.state === 'booting' ? 'bold' : 'yellow';
  const canary = s.canary === true ? ' canary' : '';
  const lines = [
    `${paint(`master ${s.pid} ${s.state}`, style)} [${s.release}] ${s.version}${canary}, ${s.workers.length}/${s.desiredWorkers} workers, up ${s.uptime}s, ${(s.rss / 1024 / 1024).toFixed(0)} MB`,
  ];
  if (s.workersStopped) lines.push(paint('  workers stopped by WINCH', 'yellow'));
  for (const release of releasesOf(master)) {
    const rate = rates.find((r) => r.master === s.pid && r.release === release);
    lines.push(...describeRelease(master, release, rate, at, paint));
  }
  return lines;
}

/** Cuts a line to `width` columns, counting only what is printed (not colour codes). */
function cut(line: string, width: number): string {
  let visible = 0;
  let out = '';
  for (let i = 0; i < line.length; i += 1) {
    if (line[i] === '\x1b') {
      const end = line.indexOf('m', i);
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    if (visible >= width) continue;
    out += line[i];
    visible += 1;
  }
  return out;
}

/** The lines of one frame. */
export function renderFrame(frame: Frame): string[] {
  const { snapshot, width } = frame;
  const paint: Paint = frame.color
    ? (text, style) => `\x1b[${CODES[style]}m${text}\x1b[0m`
    : (text) => text;
  const time = new Date(snapshot.at).toISOString().slice(11, 19);
  const lines = [
    paint(`prefork top  ${snapshot.root}  ${time}${frame.paused ? '  PAUSED' : ''}`, 'bold') +
      (frame.keys === '' ? '' : paint(`  ${frame.keys}`, 'dim')),
  ];
  const deploy = snapshot.deploy;
  if (deploy !== null) {
    lines.push(...describeDeploy(deploy, snapshot.at, paint));
    if (deploy.step === 'canary') lines.push(...describeForming(deploy, frame.canary));
  } else {
    lines.push('no deploy running');
  }
  if (snapshot.masters.length === 0) lines.push('no master running (or none answers)');
  for (const master of snapshot.masters) {
    lines.push('', ...describeMaster(master, frame.rates, snapshot.at, paint));
  }
  return lines.map((line) => cut(line, width));
}
