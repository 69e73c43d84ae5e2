import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MasterMetrics, MasterStatus } from '../control/schema.js';
import { readJournal } from '../journal/journal.js';
import { isAlive } from '../process/alive.js';
import { PAGE_HTML } from '../view/page-html.js';
import {
  deployInFlight,
  inServingOrder,
  VIEW_FORMAT,
  type ViewMaster,
  type ViewSnapshot,
} from '../view/snapshot.js';
import type { PeerMetrics } from './peer-metrics.js';

const require = createRequire(import.meta.url);
const fromDist = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/**
 * The files the live page loads, each at a fixed path: uPlot from its installed package, and
 * the page's modules as `tsc` compiled them (`dist/`, the same `rates.js` `prefork top` runs).
 * Nothing else on disk is served.
 */
const ASSETS: Record<string, { path: () => string; type: string }> = {
  '/ui/uplot.js': {
    path: () => require.resolve('uplot/dist/uPlot.iife.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
  '/ui/uplot.css': {
    path: () => require.resolve('uplot/dist/uPlot.min.css'),
    type: 'text/css; charset=utf-8',
  },
  ...Object.fromEntries(
    [
      'view/web/page.js',
      'view/rates.js',
      'view/snapshot.js',
      'figures/figures.js',
      'protocol/figures.js',
    ].map((file) => [
      `/ui/${file}`,
      { path: () => fromDist(`../${file}`), type: 'text/javascript; charset=utf-8' },
    ]),
  ),
};

/** What a look of the live page needs of the master that answers it. */
export interface LiveViewSource {
  root: string;
  own(): { status: MasterStatus; metrics: MasterMetrics };
  peerPid(): number | undefined;
}

/** A status without the host's paths: the metrics bind may be reachable beyond this host. */
function withoutPaths(status: MasterStatus): MasterStatus {
  return {
    ...status,
    root: basename(status.root),
    releaseDir: '',
    pidfile: '',
    ...(status.node === undefined ? {} : { node: { version: status.node.version, path: '' } }),
  };
}

/**
 * The live page's side of the metrics bind: `GET /` (the page), `GET /view.json` (a
 * {@link ViewSnapshot} of both masters of an upgrade, whichever answers) and the page's own
 * files under `/ui/`.
 */
export class LiveView {
  private readonly files = new Map<string, Buffer>();

  constructor(
    private readonly source: LiveViewSource,
    private readonly peers: PeerMetrics,
  ) {}

  /** The answer for `path`, or undefined when it is none of the live page's. */
  async answer(path: string): Promise<{ type: string; body: string | Buffer } | undefined> {
    if (path === '/') return { type: 'text/html; charset=utf-8', body: PAGE_HTML };
    if (path === '/view.json') {
      return { type: 'application/json', body: JSON.stringify(await this.snapshot()) };
    }
    const asset = ASSETS[path];
    if (asset === undefined) return undefined;
    let body = this.files.get(path);
    if (body === undefined) {
      body = await readFile(asset.path());
      this.files.set(path, body);
    }
    return { type: asset.type, body };
  }

  /** Both masters of an upgrade as the page shows them, the serving one first. */
  async snapshot(): Promise<ViewSnapshot> {
    const own = this.source.own();
    const masters: ViewMaster[] = [own];
    const peerPid = this.source.peerPid();
    if (peerPid !== undefined) {
      const [status, metrics] = await Promise.all([
        this.peers.fetchStatus(peerPid),
        this.peers.fetch(peerPid),
      ]);
      if (status !== undefined) masters.push({ status, metrics: metrics ?? null });
    }
    const journal = readJournal(this.source.root);
    return {
      format: VIEW_FORMAT,
      at: Date.now(),
      root: basename(this.source.root),
      masters: inServingOrder(masters).map((m) => ({ ...m, status: withoutPaths(m.status) })),
      deploy: deployInFlight(journal, journal !== undefined && isAlive(journal.pid)),
    };
  }
}
