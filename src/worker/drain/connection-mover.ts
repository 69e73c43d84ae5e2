import net from 'node:net';
import {
  type ConnAnswer,
  type ConnMessage,
  MOVE_ANSWER_MARGIN_MS,
  MOVE_EXPIRES_MS,
  type MoveOutcome,
} from '../../protocol/moves.js';

/** A TCP socket's libuv handle, as Node's `net.Socket` holds it (`_handle`). */
export interface TcpHandle {
  readStop(): number;
  readStart(): number;
  close(callback?: () => void): void;
  onread: unknown;
  /** Node's own flags: a socket has started reading it; an HTTP parser consumes it. */
  reading?: boolean;
  _consumed?: boolean;
}

/** What Node's HTTP server hangs on a socket it serves (internals, checked by the unit test). */
type ServedSocket = net.Socket & {
  _handle: TcpHandle | null;
  parser?: { finish(): unknown; unconsume(): void } | null;
  _httpMessage?: unknown;
};

function noop(): void {}

/**
 * Takes the fd of `socket`, a connection Node's HTTP server serves, away from this process's
 * HTTP server if the connection sits between two requests: no response unfinished or unflushed,
 * no byte read that the parser holds (`parser.finish()`, llhttp's end-of-input check, fails
 * mid-message and changes nothing), none buffered. Reading stops first, so nothing can be read
 * after the check; bytes the client sends from here on wait in the kernel for whoever reads
 * the fd next. Returns the handle (the socket object is closed without closing the fd), or
 * undefined and changes nothing when the connection is not idle.
 */
export function detachIdle(socket: net.Socket): TcpHandle | undefined {
  const served = socket as ServedSocket;
  const handle = served._handle;
  const parser = served.parser;
  if (!handle || !parser || typeof handle.readStop !== 'function') return undefined;
  if (served._httpMessage || socket.writableLength > 0 || socket.connecting) return undefined;
  handle.readStop();
  if (parser.finish() instanceof Error || socket.readableLength > 0) {
    handle.readStart();
    return undefined;
  }
  parser.unconsume();
  handle.onread = noop;
  // Node's flags on the handle say a socket reads it and a parser consumes it: cleared, so that
  // a socket made on it again here (a refused move) starts reading, and its parser consumes it.
  // Left set, that socket never read: its client's next request waited unread until the drain
  // closed the connection as idle, and the client got a reset.
  handle.reading = false;
  handle._consumed = false;
  served._handle = null;
  socket.setTimeout(0);
  socket.destroy();
  return handle;
}

/**
 * How many offers wait for an answer at once while the worker's loop turns quickly: a
 * connection not offered yet is served here meanwhile, and one offered waits, its client's
 * next request unread, until a worker of the next generation takes it. Every hop passes one fd
 * at a time, so the more are out, the longer each waits: at 1,000 idle clients the p99 through
 * the switch was 60–110 ms with 128 out, 8–13 ms with 8 (`npm run bench:idle`).
 */
export const MIN_PENDING_OFFERS = 8;

/**
 * How many once the worker's loop turns slowly (it serves a heavy load): then every fd it
 * passes costs one of its long turns, and the connections it still serves keep the turns long.
 * Offering up to this many at once stops the serving and lets the channel drain; with 8 out,
 * the moves of 256 saturating connections outlasted the graceful timeout
 * (test/integration/deploy-busy.test.ts, docs/connection-moves.md). It also bounds what any
 * hop holds: a worker with thousands of idle connections offers them in a stream.
 */
export const MAX_PENDING_OFFERS = 128;

/** A drain's poll coming this much later than asked says the worker's loop turns slowly. */
export const SLOW_TURN_MS = 50;

/** What an offered connection is waiting for. */
interface Offer {
  handle: TcpHandle;
  /** Set once the offer is sent: when it counts as lost. */
  timer?: NodeJS.Timeout;
}

/**
 * A worker's side of moving connections: offers its idle connections to its master while it
 * drains, keeping each fd until the answer comes (taken: close it; refused: serve the
 * connection again, never to be offered twice; no answer: close it), and takes the connections
 * its master hands it. Counts what became of what it offered.
 */
export class ConnectionMover {
  private nextId = 1;
  private readonly offers = new Map<number, Offer>();
  /**
   * Offers taken from the server and not sent yet, waiting for the channel. Node passes one fd
   * at a time on a channel (the next waits for the receiver's acknowledgement of the last), so
   * an offer is sent once the one before it is written: each offer's `expires` then runs from
   * when it leaves, not from when it joined a queue in this worker. Sent at once, offers
   * expired (5 s) in Node's queue before they left a busy worker, whose loop turns, and so
   * the acknowledgements, take about 0.5 s (16 workers on 2 saturated cores): they were
   * refused or lost (test/integration/deploy-busy.test.ts, docs/connection-moves.md).
   */
  private readonly waiting: number[] = [];
  /** The offer sent and not yet written to the channel. */
  private inChannel: number | undefined;
  private sending = false;
  /** How many offers may be out at once: {@link MIN_PENDING_OFFERS} until the loop is slow. */
  private window = MIN_PENDING_OFFERS;
  readonly outcomes: Record<MoveOutcome, number> = { taken: 0, refused: 0, lost: 0 };
  /** Called (once per turn of the loop) when offers are answered: there is room for more. */
  onRoom: (() => void) | undefined;
  private roomSoon = false;

  constructor(
    /**
     * Sends a message (with a handle) to the master; false when the channel is closed. Calls
     * `written` once the message is written to the channel (Node's `send` callback).
     */
    private readonly send: (
      message: ConnMessage | ConnAnswer,
      handle?: TcpHandle,
      written?: () => void,
    ) => boolean,
    /** Serves a connection here (a refused one comes back, or one handed to this worker). */
    private readonly serve: (socket: net.Socket, handedIn: boolean) => void,
  ) {}

  /** Connections offered and not answered yet. */
  get pending(): number {
    return this.offers.size;
  }

  /** As many offers as may wait at once are out: offer more once some are answered. */
  get full(): boolean {
    return this.offers.size >= this.window;
  }

  /**
   * The drain saw this worker's loop turn `lateMs` later than it asked: past
   * {@link SLOW_TURN_MS}, up to {@link MAX_PENDING_OFFERS} go out at once for the rest of the
   * drain (once slow, the connections still served here would keep it slow).
   */
  loopLate(lateMs: number): void {
    if (lateMs > SLOW_TURN_MS) this.window = MAX_PENDING_OFFERS;
  }

  /** Offers `socket` to the master if it is idle; true when it was taken from this server. */
  offer(socket: net.Socket): boolean {
    const handle = detachIdle(socket);
    if (handle === undefined) return false;
    const id = this.nextId;
    this.nextId += 1;
    this.offers.set(id, { handle });
    this.waiting.push(id);
    this.sendWaiting();
    return true;
  }

  /** Sends the waiting offers, one once the one before it is written. */
  private sendWaiting(): void {
    if (this.sending) return; // a send's callback ran at once: the loop below goes on
    this.sending = true;
    while (this.inChannel === undefined && this.waiting.length > 0) {
      const id = this.waiting.shift() as number;
      const offer = this.offers.get(id);
      if (offer === undefined) continue;
      // No answer by then: the master or a process after it is gone or stuck. Whoever took the
      // connection keeps it; this copy is closed (serving it again could race the taker).
      offer.timer = setTimeout(
        () => this.settle(id, 'lost'),
        MOVE_EXPIRES_MS + 2 * MOVE_ANSWER_MARGIN_MS,
      );
      offer.timer.unref();
      this.inChannel = id;
      const expires = Date.now() + MOVE_EXPIRES_MS;
      const sent = this.send({ type: 'conn', id, expires }, offer.handle, () => {
        if (this.inChannel === id) this.inChannel = undefined;
        this.sendWaiting();
      });
      if (!sent) {
        this.inChannel = undefined;
        this.settle(id, 'refused');
      }
    }
    this.sending = false;
  }

  /** The master's answer for an offer. */
  onAnswer(answer: ConnAnswer): void {
    this.settle(answer.id, answer.outcome);
  }

  private settle(id: number, outcome: MoveOutcome): void {
    const offer = this.offers.get(id);
    if (offer === undefined) return;
    this.offers.delete(id);
    if (offer.timer !== undefined) clearTimeout(offer.timer);
    this.outcomes[outcome] += 1;
    if (this.inChannel === id) {
      // Answered (or lost) before Node said it was written: the next goes now.
      this.inChannel = undefined;
      this.sendWaiting();
    }
    this.roomForMore();
    if (outcome === 'refused') {
      this.serve(socketOf(offer.handle), false);
    } else {
      offer.handle.close();
    }
  }

  /** Calls `onRoom` once this turn of the loop is over (once, however many made room). */
  private roomForMore(): void {
    if (this.roomSoon || this.onRoom === undefined) return;
    this.roomSoon = true;
    setImmediate(() => {
      this.roomSoon = false;
      this.onRoom?.();
    });
  }

  /**
   * The master is gone, or the deadline came: every offer sent is settled as lost; those never
   * sent are served here again, as refused ones are (no one else has their fd).
   */
  abandon(): void {
    const unsent = this.waiting.splice(0);
    for (const id of unsent) this.settle(id, 'refused');
    for (const id of [...this.offers.keys()]) this.settle(id, 'lost');
  }

  /**
   * The master hands this worker connection `message.id`; `accept` says whether this worker
   * may take it now (serving, not draining). Answers the master either way.
   */
  take(message: ConnMessage, handle: unknown, accept: boolean): void {
    const usable = isTcpHandle(handle);
    const outcome: MoveOutcome =
      usable && accept && Date.now() <= message.expires ? 'taken' : 'refused';
    // Answered before the connection is read: once the answer says taken, nothing else reads it.
    this.send({ type: 'conn-answer', id: message.id, outcome });
    if (!usable) return;
    if (outcome === 'refused') {
      handle.close();
      return;
    }
    this.serve(socketOf(handle), true);
  }
}

function isTcpHandle(handle: unknown): handle is TcpHandle {
  return (
    typeof handle === 'object' &&
    handle !== null &&
    typeof (handle as TcpHandle).readStart === 'function' &&
    typeof (handle as TcpHandle).close === 'function'
  );
}

/** A socket on `handle` (Node's own `handle` option, which its types leave out). */
function socketOf(handle: TcpHandle): net.Socket {
  return new net.Socket({ handle, readable: true, writable: true } as net.SocketConstructorOpts);
}
