import type { EventEmitter } from 'node:events';

/**
 * Makes `channel` (a process's own `process`, or a `ChildProcess`) emit, as a `message` without
 * a handle, a message whose handle did not arrive. A process out of file descriptors cannot
 * take one: the kernel does not install the fd (`recvmsg` truncates the ancillary data,
 * MSG_CTRUNC), and Node then answers the sending Node `NODE_HANDLE_NACK` and drops the
 * message, which it emits only as its internal `internalMessage` event. A connection moved to
 * such a process would wait, unread, for an answer until its offer expires (5 s). Delivered,
 * the message is answered `refused` by whoever receives connections (a worker, a master), so
 * the hop before, which still holds the fd, serves the connection on at once.
 */
export function deliverHandlelessMessages(channel: EventEmitter): void {
  channel.on('internalMessage', (message: unknown, handle: unknown) => {
    if (handle || typeof message !== 'object' || message === null) return;
    const { cmd, msg } = message as { cmd?: unknown; msg?: unknown };
    if (cmd === 'NODE_HANDLE') channel.emit('message', msg, undefined);
  });
}
