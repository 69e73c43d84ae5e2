import net from 'node:net';
import { FIRST_LISTEN_FD, LISTEN_BACKLOG } from '../protocol/env.js';

/**
 * Listens `server` on the inherited listen sockets at fd 3, 4, ... The app's own server takes
 * the first; each further socket gets a plain `net.Server` whose connections are handed to the
 * app's server, so one app serves every bind. Resolves once every socket is listening.
 */
export async function listenOnInheritedSockets(
  server: net.Server,
  count: number,
): Promise<net.Server[]> {
  const listeners: net.Server[] = [server];
  for (let i = 1; i < count; i += 1) {
    listeners.push(net.createServer((socket) => server.emit('connection', socket)));
  }
  await Promise.all(
    listeners.map(
      (listener, i) =>
        new Promise<void>((resolve, reject) => {
          const onError = (error: Error) => reject(error);
          listener.once('error', onError);
          listener.listen({ fd: FIRST_LISTEN_FD + i }, LISTEN_BACKLOG, () => {
            listener.off('error', onError);
            resolve();
          });
        }),
    ),
  );
  return listeners;
}

/**
 * Stops accepting on every listener without touching the connections they accepted.
 * (`http.Server.close()` would also close the idle keep-alive connections at once, racing
 * clients that are sending on them: the drain closes those itself, carefully.)
 */
export function stopAccepting(listeners: net.Server[]): void {
  for (const listener of listeners) {
    if (listener.listening) net.Server.prototype.close.call(listener);
  }
}
