import { unlinkSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import type { MasterMetrics, MasterStatus } from '../control/schema.js';
import { messageOf } from '../errors/index.js';
import type { ListenSocket } from '../handover/listen-sockets.js';
import { readDeployFigures } from './deploy-figures.js';
import { Exposition } from './exposition.js';
import { LiveView } from './live-view.js';
import { PeerMetrics } from './peer-metrics.js';

/** What a scrape asks of the master. */
export interface MetricsSource {
  /** The app root, where the deploy records are. */
  root: string;
  /** This master's own share. */
  own(): MasterMetrics;
  /** This master's status (for the live page). */
  status(): MasterStatus;
  /** The other master of an upgrade in flight (its new or its old master), if one runs. */
  peerPid(): number | undefined;
  /**
   * The service takes traffic: this master serves, or the other master of an upgrade does (a
   * booting new master, an old one retiring). False once a stop began with no other master.
   */
  ready(): boolean;
}

/** How long a stopping master waits for the scrapes it accepted before it closes them. */
export const METRICS_STOP_MS = 2000;
/** A scrape connection that sends nothing for this long is closed. */
const IDLE_MS = 5000;

/**
 * `GET /metrics` on the master's own socket (`--metrics-bind`), in the Prometheus text format.
 *
 * The socket is handed over on USR2 like the app's, so both masters of an upgrade accept on
 * it; whichever takes a scrape answers for both (its share and the other's, asked on its control
 * socket), so every scrape shows every worker of the service. Each answer closes its connection
 * (`Connection: close`): no kept-alive scrape is left on a master that is about to exit, and a
 * stopping master answers what it accepted before it exits ({@link stop}).
 */
export class MetricsServer {
  private readonly server: http.Server;
  private readonly connections = new Set<net.Socket>();
  private readonly exposition = new Exposition();
  private readonly peers: PeerMetrics;
  private readonly live: LiveView;

  constructor(
    readonly socket: ListenSocket,
    private readonly source: MetricsSource,
    private readonly logger: Logger,
  ) {
    this.peers = new PeerMetrics(source.root);
    this.live = new LiveView(
      {
        root: source.root,
        own: () => ({ status: source.status(), metrics: source.own() }),
        peerPid: () => source.peerPid(),
      },
      this.peers,
    );
    this.server = http.createServer({ requestTimeout: IDLE_MS }, (req, res) => {
      void this.answer(req, res);
    });
    this.server.on('connection', (connection: net.Socket) => {
      this.connections.add(connection);
      connection.setTimeout(IDLE_MS, () => connection.destroy());
      connection.once('close', () => this.connections.delete(connection));
    });
    this.server.on('clientError', (_error, connection: net.Socket) => connection.destroy());
  }

  /** Starts accepting on the socket (bound by this master or inherited from the old one). */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      // A handle of its own on the socket's fd: the bind handle is left alone (see stop()).
      this.server.listen({ fd: this.socket.fd }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.unref();
  }

  private async answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('Connection', 'close');
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path === '/live' || path === '/ready') {
      // Kubernetes' probes (docs/containers.md): live while a master answers; ready until a
      // stop begins (then 503, so a load balancer stops routing before the drain ends).
      const ok = path === '/live' || this.source.ready();
      res.writeHead(ok ? 200 : 503, { 'Content-Type': 'text/plain' });
      res.end(ok ? 'ok\n' : 'stopping\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end();
      return;
    }
    try {
      if (path !== '/metrics') {
        // The live page (docs/live-view.md): `/`, `/view.json` and its files under `/ui/`.
        const page = await this.live.answer(path);
        if (page === undefined) {
          res
            .writeHead(404, { 'Content-Type': 'text/plain' })
            .end('prefork serves GET /metrics, /ready, /live, and a live page at /\n');
          return;
        }
        res.writeHead(200, { 'Content-Type': page.type, 'Cache-Control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : page.body);
        return;
      }
      const own = this.source.own();
      const peerPid = this.source.peerPid();
      const peer = peerPid === undefined ? undefined : await this.peers.fetch(peerPid);
      const text = await this.exposition.render(
        peer === undefined ? [own] : [own, peer],
        readDeployFigures(this.source.root),
      );
      res.writeHead(200, { 'Content-Type': this.exposition.contentType });
      res.end(req.method === 'HEAD' ? undefined : text);
    } catch (error) {
      this.logger.error({ err: error }, `metrics: cannot answer a scrape: ${messageOf(error)}`);
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${messageOf(error)}\n`);
    }
  }

  /**
   * Before the master exits: stops accepting unless another master still serves the socket
   * (`shared`; a Unix socket file is then left in place, and connections waiting in the backlog
   * stay for that master), and calls `then` once every scrape it accepted is answered, at most
   * {@link METRICS_STOP_MS} later. `then` runs in the same turn as the last connection's close,
   * so no connection is accepted between that check and the exit.
   */
  stop(shared: boolean, then: () => void): void {
    if (!shared) {
      this.server.close();
      if (this.socket.bind.kind === 'unix') {
        try {
          unlinkSync(this.socket.bind.path);
        } catch {
          // gone already
        }
      }
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      then();
    };
    const timer = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
      finish();
    }, METRICS_STOP_MS);
    const check = () => {
      if (this.connections.size === 0) finish();
    };
    this.server.on('connection', (connection: net.Socket) => connection.once('close', check));
    for (const connection of this.connections) connection.once('close', check);
    check();
  }
}
