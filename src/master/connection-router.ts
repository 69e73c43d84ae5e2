import * as v from 'valibot';
import { onChannelClosed } from '../process/channel-closed.js';
import { deliverHandlelessMessages } from '../process/handleless-messages.js';
import {
  type ConnAnswer,
  type ConnMessage,
  MOVE_ANSWER_MARGIN_MS,
  MOVES_PROTOCOL,
  type MoveOutcome,
  type PeerHooks,
  type PeerLink,
  PeerMessageSchema,
} from '../protocol/moves.js';
import type { WorkerRecord } from '../worker-kind/worker-record.js';
import type { WorkerPool } from './worker-pool.js';

/** A handle as it crosses a master: closed here once the next hop has answered. */
interface Handle {
  close(): void;
}

/** Where a connection came from: a worker of this master, or the peer master. */
type Origin = { worker: number; id: number } | { peer: PeerLink; id: number };

/** A connection sent on and not answered yet. */
interface Forwarded {
  handle: Handle;
  origin: Origin;
  /** The worker's pid, or the peer, it was sent to. */
  to: number | PeerLink;
  expires: number;
}

/** What the router needs of its master. */
export interface RouterDeps {
  /** Moving is on (`moveConnections`). */
  enabled(): boolean;
  /** Workers that may take a connection now: ready, of the current generation ({@link movesConnections}). */
  candidates(): WorkerRecord[];
  /** The worker with `pid`, draining or not (to answer its offer). */
  worker(pid: number): WorkerRecord | undefined;
}

/** How often the router looks for connections whose answer is overdue. */
const SWEEP_MS = 250;

/**
 * A master's part in moving connections (docs/connection-moves.md): a draining worker offers
 * an idle connection; the router hands it to a serving worker of this master, or, when it has
 * none, to the other master of an upgrade (which hands it to one of its own, never back), and
 * relays the answer to where the connection came from. Each hop keeps its copy of the fd until
 * the next hop has answered, then closes it; a hop that has no answer past the connection's
 * `expires` (plus a margin, looked at after the loop has read its channels) answers `refused`,
 * since no worker takes a connection after its `expires`; a hop whose next process died
 * answers `lost`, since that process may have taken it.
 */
export class ConnectionRouter {
  private nextId = 1;
  private readonly forwarded = new Map<number, Forwarded>();
  private readonly peers: { child?: PeerLink; parent?: PeerLink } = {};
  private readonly hello = new WeakSet<PeerLink>();
  private turn = 0;
  private sweep: NodeJS.Timeout | undefined;
  /** What became of the connections this master passed on, by outcome. */
  readonly outcomes: Record<MoveOutcome, number> = { taken: 0, refused: 0, lost: 0 };

  constructor(private readonly deps: RouterDeps) {}

  /** A connection `worker` (of this master) could move now has somewhere to go. */
  canPlace(worker: number): boolean {
    if (!this.deps.enabled()) return false;
    return this.pick(worker) !== undefined || this.peer() !== undefined;
  }

  /** The other master of an upgrade is reachable (`link`), or gone (`undefined`). */
  setPeer(role: 'child' | 'parent', link: PeerLink | undefined): void {
    const old = this.peers[role];
    if (old !== undefined && old !== link) this.settleWhere((f) => f.to === old, 'lost');
    if (link === undefined) delete this.peers[role];
    else {
      this.peers[role] = link;
      link.send({ type: 'peer-hello', version: MOVES_PROTOCOL });
    }
  }

  /** Hooks for the IPC channel to the other master, in `role`. */
  hooks(role: 'child' | 'parent'): PeerHooks {
    return {
      onLink: (link) => this.setPeer(role, link),
      onMessage: (raw, handle) => this.onPeerMessage(role, raw, handle),
      onGone: () => this.setPeer(role, undefined),
    };
  }

  /** A message from the other master (validated here: it crossed a process boundary). */
  onPeerMessage(role: 'child' | 'parent', raw: unknown, handle: unknown): void {
    const link = this.peers[role];
    const parsed = v.safeParse(PeerMessageSchema, raw);
    if (link === undefined || !parsed.success) {
      closeHandle(handle);
      return;
    }
    const message = parsed.output;
    if (message.type === 'peer-hello') {
      if (message.version >= 1) this.hello.add(link);
    } else if (message.type === 'conn') {
      this.place(message, handle, { peer: link, id: message.id });
    } else {
      this.settle(message.id, message.outcome, link);
    }
  }

  /** A worker's `conn` (an offer) or `conn-answer` (what it did with one it was handed). */
  onWorkerMessage(pid: number, message: ConnMessage | ConnAnswer, handle: unknown): void {
    if (message.type === 'conn') this.place(message, handle, { worker: pid, id: message.id });
    else this.settle(message.id, message.outcome, pid);
  }

  /** Worker `pid` is gone: what was sent to it may have been taken (lost), and it takes no answer. */
  workerGone(pid: number): void {
    this.settleWhere((f) => f.to === pid, 'lost');
  }

  /** Stops the sweep timer (the master exits). */
  close(): void {
    if (this.sweep !== undefined) clearInterval(this.sweep);
    this.sweep = undefined;
  }

  private place(message: ConnMessage, raw: unknown, origin: Origin): void {
    if (!isHandle(raw)) {
      this.answer(origin, 'refused');
      return;
    }
    const fromPeer = 'peer' in origin;
    const exclude = 'worker' in origin ? origin.worker : 0;
    const open = this.deps.enabled() && Date.now() < message.expires;
    // The old master of an upgrade sends its workers' connections on to the new one at once:
    // its own other workers are being replaced too (a deploy retires them one at a time), and
    // each hop within it would be a move more.
    const newer = open && !fromPeer ? this.newerPeer() : undefined;
    const worker = open && newer === undefined ? this.pick(exclude) : undefined;
    const peer = newer ?? (worker === undefined && !fromPeer && open ? this.peer() : undefined);
    const to = worker?.pid ?? peer;
    if (to === undefined || Date.now() >= message.expires) {
      raw.close();
      this.answer(origin, 'refused');
      return;
    }
    const id = this.nextId;
    this.nextId += 1;
    this.forwarded.set(id, { handle: raw, origin, to, expires: message.expires });
    this.startSweep();
    const onward: ConnMessage = { type: 'conn', id, expires: message.expires };
    let sent: boolean;
    try {
      sent =
        worker !== undefined
          ? sendToWorker(worker, onward, raw)
          : (peer?.send(onward, raw) ?? false);
    } catch {
      sent = false;
    }
    if (!sent) this.settle(id, 'refused', to);
  }

  /** The answer for connection `id`, from `from` (the process it was sent to). */
  private settle(id: number, outcome: MoveOutcome, from: number | PeerLink): void {
    const forwarded = this.forwarded.get(id);
    if (forwarded === undefined || forwarded.to !== from) return;
    this.forwarded.delete(id);
    forwarded.handle.close();
    this.outcomes[outcome] += 1;
    this.answer(forwarded.origin, outcome);
  }

  private settleWhere(which: (f: Forwarded) => boolean, outcome: MoveOutcome): void {
    for (const [id, forwarded] of [...this.forwarded]) {
      if (which(forwarded)) this.settle(id, outcome, forwarded.to);
    }
  }

  private answer(origin: Origin, outcome: MoveOutcome): void {
    const message: ConnAnswer = { type: 'conn-answer', id: origin.id, outcome };
    try {
      if ('peer' in origin) origin.peer.send(message);
      else this.deps.worker(origin.worker)?.process?.send(message, () => {});
    } catch {
      // the origin is gone: it closed its copy with its exit
    }
  }

  /** The next candidate worker, in turn (not `exclude`). */
  private pick(exclude: number): WorkerRecord | undefined {
    const candidates = this.deps.candidates().filter((w) => w.pid !== exclude);
    if (candidates.length === 0) return undefined;
    this.turn = (this.turn + 1) % candidates.length;
    return candidates[this.turn];
  }

  /** The new master of an upgrade this master started, once it said hello. */
  private newerPeer(): PeerLink | undefined {
    const { child } = this.peers;
    return child !== undefined && this.hello.has(child) ? child : undefined;
  }

  /** The other master to move connections to: the newer one first, once it said hello. */
  private peer(): PeerLink | undefined {
    const { child, parent } = this.peers;
    if (child !== undefined && this.hello.has(child)) return child;
    if (parent !== undefined && this.hello.has(parent)) return parent;
    return undefined;
  }

  /** Answers `refused` for connections past their `expires` and margin, once the loop has read. */
  private startSweep(): void {
    if (this.sweep !== undefined) return;
    this.sweep = setInterval(() => {
      if (this.forwarded.size === 0) {
        this.close();
        return;
      }
      const late = Date.now() - MOVE_ANSWER_MARGIN_MS;
      const overdue = [...this.forwarded].filter(([, f]) => f.expires < late).map(([id]) => id);
      if (overdue.length === 0) return;
      setImmediate(() => {
        for (const id of overdue) {
          const forwarded = this.forwarded.get(id);
          if (forwarded !== undefined) this.settle(id, 'refused', forwarded.to);
        }
      });
    }, SWEEP_MS);
    this.sweep.unref();
  }
}

function isHandle(handle: unknown): handle is Handle {
  return (
    typeof handle === 'object' && handle !== null && typeof (handle as Handle).close === 'function'
  );
}

function closeHandle(handle: unknown): void {
  if (isHandle(handle)) handle.close();
}

function sendToWorker(worker: WorkerRecord, message: ConnMessage, handle: Handle): boolean {
  if (worker.process === undefined) return false;
  worker.process.send(message, handle as never, {}, () => {});
  return true;
}

/**
 * The router of a master whose workers are `pool`'s: it hands connections to ready workers of
 * the current generation, and tells the pool whether a draining worker may move its own.
 */
export function routerFor(
  pool: WorkerPool,
  current: () => { number: number; config: { moveConnections: boolean } },
): ConnectionRouter {
  const router = new ConnectionRouter({
    enabled: () => current().config.moveConnections,
    candidates: () =>
      pool.serving(current().number).filter((w) => w.state === 'ready' && movesConnections(w)),
    worker: (pid) => pool.get(pid),
  });
  pool.canMove = (worker) => movesConnections(worker) && router.canPlace(worker.pid);
  return router;
}

/**
 * `worker` serves plain HTTP/1.1 and speaks the moves protocol: its idle connections can be
 * moved, and it can be handed others.
 */
export function movesConnections(worker: WorkerRecord): boolean {
  return worker.moves && !worker.tls && worker.http === 'http/1.1' && worker.process !== undefined;
}

/** The new master's side of the channel its old master spawned it with (USR2), if it has one. */
export function linkParent(oldMasterPid: number | undefined, peer: PeerHooks): void {
  if (oldMasterPid === undefined || process.ppid !== oldMasterPid) return;
  if (typeof process.send !== 'function') return; // an old master of an earlier prefork
  deliverHandlelessMessages(process); // a connection whose fd did not arrive: refused
  process.on('message', (raw, handle) => peer.onMessage(raw, handle));
  onChannelClosed(process, () => peer.onGone());
  peer.onLink({
    pid: oldMasterPid,
    send: (message, handle) => {
      if (!process.connected) return false;
      process.send?.(message, handle as never, {}, () => {});
      return true;
    },
  });
}
