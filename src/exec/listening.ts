import { spawnSync } from 'node:child_process';
import { FIRST_LISTEN_FD, LISTEN_BACKLOG } from '../protocol/env.js';

/** How long the helper may take (one short-lived `node`). */
const HELPER_MS = 30_000;

/**
 * Run with the sockets at fd 3, 4, ...: `listen()` on each, then exit before the event loop
 * ever runs, so the helper never accepts a connection (Node's `listen({ fd })` calls listen(2)
 * synchronously; accepting would wait for the loop). The sockets stay listening: that is a
 * state of the socket, shared by every process holding it.
 */
const HELPER = `
const net = require('node:net');
const count = Number(process.argv[1]);
for (let i = 0; i < count; i += 1) net.createServer().listen({ fd: ${FIRST_LISTEN_FD} + i }, ${LISTEN_BACKLOG});
process.exit(0);
`;

const listening = new Set<number>();

/**
 * Makes sure the listen sockets with these fds are listening. A master binds its sockets but
 * never listens itself (it would accept); Node workers call listen(2) on their own. An exec
 * worker expects what systemd hands over, sockets already listening, so before the first one
 * this master spawns, a helper process listens on them for it. Once per socket per master.
 */
export function ensureListening(fds: number[]): void {
  const missing = fds.filter((fd) => !listening.has(fd));
  if (missing.length === 0) return;
  const result = spawnSync(process.execPath, ['-e', HELPER, String(missing.length)], {
    stdio: ['ignore', 'ignore', 'pipe', ...missing],
    encoding: 'utf8',
    timeout: HELPER_MS,
  });
  if (result.status !== 0) {
    const why =
      result.error?.message ?? result.stderr.trim().split('\n').pop() ?? `exit ${result.status}`;
    throw new Error(`cannot make the listen sockets listen for an exec worker: ${why}`);
  }
  for (const fd of missing) listening.add(fd);
}
