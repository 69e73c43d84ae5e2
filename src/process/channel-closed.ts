import type { ChildProcess } from 'node:child_process';

/** How often the channel is looked at, for the close Node does not announce. */
const LOOK_EVERY_MS = 50;

/**
 * Calls `onClosed` once, when the IPC channel of `target` (this process's to its parent, or a
 * child's) has closed: the process at the other end exited or was killed.
 *
 * Node announces that with `disconnect`, except when the channel closes while a handle sent on
 * it waits for the other end's acknowledgement (`NODE_HANDLE_ACK`): the disconnect then waits
 * for that queue to drain, which never happens with the other end gone, and no event comes
 * (Node 20 and 26, `lib/internal/child_process.js`). `connected` turns false all the same, so
 * it is looked at too. Seen with a master SIGKILLed while its worker offered it connections:
 * the worker never learned, and every connection it had offered waited out its offer and was
 * then closed unread, resetting the request its client had sent meanwhile.
 */
export function onChannelClosed(target: NodeJS.Process | ChildProcess, onClosed: () => void): void {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(look);
    target.off('disconnect', close);
    onClosed();
  };
  const look = setInterval(() => {
    if (!target.connected) close();
  }, LOOK_EVERY_MS);
  look.unref();
  target.once('disconnect', close);
  if (!target.connected) queueMicrotask(close);
}
