import type { WorkerMessage } from '../protocol/ipc.js';

/**
 * What one sd_notify datagram (`READY=1\nSTATUS=serving\n`, sd_notify(3)) means to a master, as
 * the messages a Node worker would send over IPC: `READY=1` → ready, `WATCHDOG=1` → a
 * heartbeat, `STATUS=` → the text `prefork status` shows. Other assignments (`MAINPID=`,
 * `RELOADING=1`, `STOPPING=1`, ...) are systemd's business and are ignored.
 */
export function notifyMessages(datagram: string): WorkerMessage[] {
  const messages: WorkerMessage[] = [];
  for (const line of datagram.split('\n')) {
    const eq = line.indexOf('=');
    if (eq < 1) continue;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'READY' && value === '1')
      messages.push({ type: 'ready', tls: false, http: 'http/1.1', moves: false });
    else if (key === 'WATCHDOG' && value === '1') messages.push({ type: 'watchdog' });
    else if (key === 'STATUS') messages.push({ type: 'status', text: value.slice(0, 200) });
  }
  return messages;
}
