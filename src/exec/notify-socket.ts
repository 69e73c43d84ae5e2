import { chownSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { WorkerIdentity } from '../worker-kind/worker-identity.js';

/** The part of `unix-dgram` a notify socket uses. */
interface UnixDgramSocket {
  on(event: 'message', listener: (message: Buffer) => void): void;
  on(event: 'error', listener: (error: Error) => void): void;
  bind(path: string): void;
  close(): void;
}
interface UnixDgram {
  createSocket(type: 'unix_dgram'): UnixDgramSocket;
}

let unixDgram: UnixDgram | undefined;

/** The longest path a Unix socket can be bound at on Linux (`sun_path` less its NUL). */
const MAX_SOCKET_PATH = 107;

/**
 * `unix-dgram`, loaded the first time an exec worker is spawned: Node core has no Unix
 * datagram sockets, and a master serving a Node release never needs this native addon.
 */
function loadUnixDgram(): UnixDgram {
  unixDgram ??= createRequire(import.meta.url)('unix-dgram') as UnixDgram;
  return unixDgram;
}

/**
 * One exec worker's `NOTIFY_SOCKET`: a Unix datagram socket bound at `path`, which only this
 * worker is told of. A master cannot read a sender's pid from a datagram in Node, so the socket
 * names the sender: a message that arrives here is this worker's (or its children's), and once
 * the worker exits the socket is closed and removed, so nothing else can speak for it.
 */
export class NotifySocket {
  private closed = false;

  private constructor(
    private readonly socket: UnixDgramSocket,
    /** Where workers send to: the value of `NOTIFY_SOCKET`. */
    readonly path: string,
  ) {}

  /**
   * Binds a socket at `path` (a file left there by a master that died is removed first: the
   * directory is prefork's own) and calls `onDatagram` with each message. With `owner`, the
   * socket file is handed to the workers' user (`--user`), who must be able to write to it.
   */
  static open(
    path: string,
    onDatagram: (text: string) => void,
    owner: WorkerIdentity | undefined,
  ): NotifySocket {
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
      throw new Error(
        `the notify socket path ${path} is longer than a Unix socket path may be (${MAX_SOCKET_PATH} bytes): use a shorter --root`,
      );
    }
    const socket = loadUnixDgram().createSocket('unix_dgram');
    let bindError: Error | undefined;
    socket.on('error', (error) => {
      bindError = error;
    });
    rmSync(path, { force: true });
    socket.bind(path);
    if (bindError !== undefined) {
      socket.close();
      throw new Error(`cannot bind the notify socket ${path}: ${bindError.message}`);
    }
    if (owner !== undefined) {
      try {
        chownSync(path, owner.uid, owner.gid);
      } catch (error) {
        socket.close();
        rmSync(path, { force: true });
        throw error;
      }
    }
    socket.on('message', (message) => onDatagram(message.toString('utf8')));
    return new NotifySocket(socket, path);
  }

  /** Stops listening and removes the socket file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } finally {
      rmSync(this.path, { force: true });
    }
  }
}
