/**
 * The live page's script (docs/live-view.md), run by the browser as a module served from the
 * metrics bind: it asks `GET /view.json` once a second and draws what changed since the last
 * look (the same `rates.js` as `prefork top`) into a table of generations and three uPlot
 * charts kept for the last five minutes. The bind outlives every master, so the page carries
 * on across deploys: a new release's series appears, an old one's ends.
 */
import {
  byRelease,
  CanaryTally,
  type FormingSide,
  RateWindow,
  type ReleaseRate,
  ratesBetween,
  releasesOf,
} from '../rates.js';
import { VIEW_FORMAT, type ViewDeploy, type ViewMaster, type ViewSnapshot } from '../snapshot.js';

const POLL_MS = 1000;
/** Seconds of history the charts keep. */
const KEEP_S = 300;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2'];

/** Points in time and, per series, a value (or null: no such series then) at each. */
class History {
  readonly times: number[] = [];
  readonly series = new Map<string, (number | null)[]>();

  /** Adds one point in time with each series' value; a series not given gets null. */
  push(at: number, values: Map<string, number | null>): void {
    this.times.push(at / 1000);
    for (const key of values.keys()) {
      if (!this.series.has(key))
        this.series.set(
          key,
          this.times.slice(0, -1).map(() => null),
        );
    }
    for (const [key, points] of this.series) points.push(values.get(key) ?? null);
    while ((this.times[0] ?? Number.POSITIVE_INFINITY) < at / 1000 - KEEP_S) {
      this.times.shift();
      for (const points of this.series.values()) points.shift();
    }
    for (const [key, points] of this.series) {
      if (points.every((p) => p === null)) this.series.delete(key);
    }
  }
}

/** One uPlot chart, made again when its series change. */
class Chart {
  private plot: uPlot | undefined;
  private keys: string[] = [];
  private colorOf = new Map<string, string>();

  constructor(
    private readonly element: HTMLElement,
    private readonly unit: string,
  ) {}

  draw(history: History): void {
    const keys = [...history.series.keys()].sort();
    const data: uPlot.AlignedData = [
      history.times,
      ...keys.map((k) => history.series.get(k) ?? []),
    ];
    if (this.plot === undefined || keys.join('\n') !== this.keys.join('\n')) {
      this.plot?.destroy();
      this.keys = keys;
      for (const key of keys) {
        if (!this.colorOf.has(key)) {
          this.colorOf.set(key, COLORS[this.colorOf.size % COLORS.length] ?? '#000');
        }
      }
      this.plot = new uPlot(
        {
          width: 420,
          height: 220,
          scales: { y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
          series: [
            {},
            ...keys.map((label) => ({
              label,
              stroke: this.colorOf.get(label) ?? '#000',
              width: 2,
              value: (_u: uPlot, v: number | null) =>
                v === null ? '-' : `${v.toFixed(1)} ${this.unit}`,
            })),
          ],
          axes: [{}, { size: 60 }],
        },
        data,
        this.element,
      );
    } else {
      this.plot.setData(data);
    }
    // The legend shows the latest values unless the pointer is over the chart.
    if (this.plot.cursor.left === undefined || this.plot.cursor.left < 0) {
      this.plot.setLegend({ idx: history.times.length - 1 });
    }
  }
}

const byId = (id: string) => document.getElementById(id) as HTMLElement;
const rateHistory = new History();
const p99History = new History();
const workerHistory = new History();
const charts = {
  rate: new Chart(byId('chart-rate'), 'req/s'),
  p99: new Chart(byId('chart-p99'), 'ms'),
  workers: new Chart(byId('chart-workers'), ''),
};
const rateWindow = new RateWindow();
const tally = new CanaryTally();
let previous: ViewSnapshot | undefined;
let looks = 0;

function cell(text: string, numeric = false): HTMLTableCellElement {
  const td = document.createElement('td');
  td.textContent = text;
  if (numeric) td.className = 'num';
  return td;
}

function connectionsOf(master: ViewMaster, release: string): string {
  let total = 0;
  const kinds = new Map<string, number>();
  for (const w of master.status.workers) {
    if (w.release !== release || w.connections === undefined) continue;
    for (const [kind, n] of Object.entries(w.connections.byKind)) {
      total += n ?? 0;
      kinds.set(kind, (kinds.get(kind) ?? 0) + (n ?? 0));
    }
  }
  const parts = [...kinds].filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return parts.length === 0 ? String(total) : `${total} (${parts.join(', ')})`;
}

function drainOf(master: ViewMaster, release: string, at: number): string {
  const draining = master.status.workers.filter(
    (w) => w.release === release && w.state === 'draining',
  );
  if (draining.length === 0) return '';
  const deadlines = draining.flatMap((w) =>
    w.drainDeadline === undefined ? [] : [w.drainDeadline],
  );
  const moved = draining.reduce((sum, w) => sum + (w.drained?.moved ?? 0), 0);
  const due =
    deadlines.length === 0
      ? ''
      : `, deadline in ${Math.max(0, Math.ceil((Math.max(...deadlines) - at) / 1000))} s`;
  return `${draining.length} draining${due}${moved > 0 ? `, ${moved} moved` : ''}`;
}

function fixed(value: number | null, digits: number, suffix = ''): string {
  return value === null ? '-' : `${value.toFixed(digits)}${suffix}`;
}

function drawTable(snapshot: ViewSnapshot, rates: ReleaseRate[]): void {
  const body = byId('generations').querySelector('tbody') as HTMLTableSectionElement;
  const rows: HTMLTableRowElement[] = [];
  for (const master of snapshot.masters) {
    const s = master.status;
    for (const release of releasesOf(master)) {
      const workers = s.workers.filter((w) => w.release === release);
      const rate = rates.find((r) => r.master === s.pid && r.release === release);
      const count = (state: string) => workers.filter((w) => w.state === state).length;
      const tr = document.createElement('tr');
      tr.dataset.master = String(s.pid);
      tr.dataset.release = release;
      if (workers.length === 0) tr.className = 'gone';
      tr.append(
        cell(String(s.pid)),
        cell(`${s.state}${s.canary === true ? ' (canary)' : ''}`),
        cell(`${release} ${release === s.release ? s.version : ''}`),
        cell(`${count('ready')} ready, ${count('booting')} booting, ${count('draining')} draining`),
        cell(fixed(rate?.rate ?? null, 1), true),
        cell(fixed(rate?.errorShare == null ? null : rate.errorShare * 100, 1, '%'), true),
        cell(fixed(rate?.p99 == null ? null : rate.p99 * 1000, 1, ' ms'), true),
        cell(connectionsOf(master, release)),
        cell(drainOf(master, release, snapshot.at)),
      );
      rows.push(tr);
    }
  }
  body.replaceChildren(...rows);
}

function describeDeploy(deploy: ViewDeploy | null, at: number): string {
  if (deploy === null) return 'no deploy running';
  const since = (iso: string) => Math.max(0, Math.round((at - Date.parse(iso)) / 1000));
  const judged = deploy.canary.map((c) => `; canary step ${c.step}/${c.of}: ${c.verdict}`).join('');
  return `${deploy.kind} ${deploy.release} (${deploy.version})${deploy.previous === null ? '' : ` from ${deploy.previous}`}: step ${deploy.step} for ${since(deploy.stepAt)} s${judged}`;
}

/** The canary step being judged, as its figures stand so far. */
function describeForming(sides: FormingSide[]): string {
  if (sides.length === 0) return '';
  const side = (s: FormingSide) =>
    `${s.release}: ${s.responses} responses, p99 ${fixed(s.p99 === null ? null : s.p99 * 1000, 1, ' ms')}, ${fixed(s.errorShare === null ? null : s.errorShare * 100, 2, '%')} 5xx`;
  return `; this step so far: ${sides.map(side).join('; ')}`;
}

function show(snapshot: ViewSnapshot): void {
  const rates = rateWindow.push(snapshot);
  tally.add(snapshot, ratesBetween(previous, snapshot));
  previous = snapshot;
  looks += 1;
  byId('root').textContent = snapshot.root;
  byId('state').textContent =
    `${snapshot.masters.length} master(s); last look ${new Date(snapshot.at).toLocaleTimeString()}`;
  const deploy = byId('deploy');
  deploy.textContent =
    describeDeploy(snapshot.deploy, snapshot.at) + describeForming(tally.sides());
  deploy.className = snapshot.deploy === null ? 'idle' : '';
  drawTable(snapshot, rates);
  if (looks > 1) {
    const totals = byRelease(rates);
    rateHistory.push(snapshot.at, new Map(totals.map((t) => [t.release, t.rate])));
    p99History.push(
      snapshot.at,
      new Map(totals.map((t) => [t.release, t.p99 === null ? null : t.p99 * 1000])),
    );
  }
  workerHistory.push(
    snapshot.at,
    new Map(
      snapshot.masters.flatMap((m) =>
        releasesOf(m).map((release) => [
          `${release} (master ${m.status.pid})`,
          m.status.workers.filter((w) => w.release === release).length,
        ]),
      ),
    ),
  );
  charts.rate.draw(rateHistory);
  charts.p99.draw(p99History);
  charts.workers.draw(workerHistory);
  // What the page shows, for whoever drives it from a script (docs/live-view.md).
  document.body.dataset.looks = String(looks);
}

async function look(): Promise<void> {
  try {
    const response = await fetch('/view.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snapshot = (await response.json()) as ViewSnapshot;
    if (snapshot.format !== VIEW_FORMAT) {
      throw new Error(
        `this page reads view format ${VIEW_FORMAT}, the master sent ${snapshot.format}: reload the page`,
      );
    }
    show(snapshot);
  } catch (error) {
    const state = byId('state');
    state.textContent = `no answer from the metrics bind (${(error as Error).message}); trying again`;
    state.className = 'error';
    return;
  }
  byId('state').className = '';
}

/** The charts' series, for scripts that check what the page drew. */
declare global {
  interface Window {
    preforkLive: { rate: History; p99: History; workers: History };
  }
}
window.preforkLive = { rate: rateHistory, p99: p99History, workers: workerHistory };

async function loop(): Promise<void> {
  for (;;) {
    const started = Date.now();
    await look();
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(100, POLL_MS - (Date.now() - started))),
    );
  }
}
void loop();
