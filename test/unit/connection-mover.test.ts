import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type ConnAnswer, type ConnMessage, MOVE_EXPIRES_MS } from '../../src/protocol/moves.js';
import {
  ConnectionMover,
  MAX_PENDING_OFFERS,
  MIN_PENDING_OFFERS,
  SLOW_TURN_MS,
} from '../../src/worker/drain/connection-mover.js';
import { ConnectionTracker } from '../../src/worker/drain/connection-tracker.js';
import { waitFor } from '../helpers/processes.js';
import { REPO } from '../helpers/repo.js';

const servers: http.Server[] = [];
const agents: http.Agent[] = [];

const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  for (const agent of agents.splice(0)) agent.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

/**
 * `count` kept-alive clients on `port`, each sending its next request as soon as it has an
 * answer; what they saw is counted until `stop()`.
 */
function startClients(port: number, count: number) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  agents.push(agent);
  const state = { answered: 0, toldToClose: 0, slowestMs: 0, errors: [] as string[] };
  let stopped = false;
  const client = async () => {
    while (!stopped) {
      const sent = Date.now();
      await new Promise<void>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, agent }, (res) => {
          if (res.headers.connection === 'close') state.toldToClose += 1;
          res.resume();
          res.on('end', () => {
            state.answered += 1;
            state.slowestMs = Math.max(state.slowestMs, Date.now() - sent);
            resolve();
          });
        });
        req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
        req.on('error', (error: NodeJS.ErrnoException) => {
          state.errors.push(`${error.code ?? ''} ${error.message}`);
          resolve();
        });
      });
    }
  };
  const clients = Array.from({ length: count }, client);
  return Object.assign(state, {
    async stop() {
      stopped = true;
      await Promise.all(clients);
    },
  });
}

/** Drains `tracker` as a worker told to move does: offers its idle connections through `mover`. */
function drainMoving(tracker: ConnectionTracker, mover: ConnectionMover): NodeJS.Timeout {
  tracker.startDraining(true);
  mover.onRoom = () => tracker.moveIdle(mover);
  return setInterval(() => {
    tracker.moveIdle(mover, true);
    tracker.closeIdle(250);
  }, 50);
}

describe('a move the next generation refuses', () => {
  it('serves the connection here again: the request its client sent meanwhile is answered, with Connection: close', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    const tracker = new ConnectionTracker(server, () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // The master's answer to every offer, a few ms later: refused (no worker can take it).
    const mover: ConnectionMover = new ConnectionMover(
      (message: ConnMessage | ConnAnswer, _handle, written) => {
        if (message.type === 'conn') {
          const answer: ConnAnswer = { type: 'conn-answer', id: message.id, outcome: 'refused' };
          setImmediate(() => written?.());
          setTimeout(() => mover.onAnswer(answer), 5);
        }
        return true;
      },
      (socket, handedIn) => tracker.adopt(socket, handedIn),
    );

    // Six kept-alive clients, each sending its next request as soon as it has an answer: their
    // requests arrive while their connections are offered.
    const load = startClients(port, 6);
    await waitFor('traffic', () => load.answered > 100);

    const poll = drainMoving(tracker, mover);
    try {
      await waitFor('offers refused', () => mover.outcomes.refused >= 12, 10_000);
    } finally {
      clearInterval(poll);
      await load.stop();
    }
    expect(load.errors).toEqual([]);
    // Every refused connection answered its next request, saying `Connection: close` (but for
    // up to one per client, refused once its client had stopped sending).
    expect(load.toldToClose).toBeGreaterThanOrEqual(mover.outcomes.refused - 6);
    expect(load.toldToClose).toBeLessThanOrEqual(mover.outcomes.refused);
    expect(mover.outcomes.taken + mover.outcomes.lost).toBe(0);
  });
});

describe('a move to a process out of file descriptors', () => {
  it('is refused at once, not when the offer expires: its connection is served on here, nothing lost', async () => {
    // The receiver: a process at its fd limit (64), taking connections as a worker does. The
    // kernel cannot give it a moved fd; Node drops such a message but for an internal event.
    const dir = mkdtempSync(join(tmpdir(), 'prefork-fd-full-'));
    dirs.push(dir);
    const script = join(dir, 'receiver.mjs');
    writeFileSync(
      script,
      `import { openSync } from 'node:fs';
import { deliverHandlelessMessages } from ${JSON.stringify(join(REPO, 'dist/process/handleless-messages.js'))};
import { ConnectionMover } from ${JSON.stringify(join(REPO, 'dist/worker/drain/connection-mover.js'))};
const mover = new ConnectionMover((message) => {
  process.send(message);
  return true;
}, () => {
  process.send({ type: 'served' }); // a connection arrived after all: this test fails
});
deliverHandlelessMessages(process);
process.on('message', (message, handle) => {
  if (message.type === 'conn') mover.take(message, handle, true);
});
const held = [];
try {
  for (;;) held.push(openSync('/dev/null', 'r'));
} catch (error) {
  process.send({ type: 'full', code: error.code, held: held.length });
}
`,
    );
    const receiver = spawn(
      '/bin/sh',
      ['-c', 'ulimit -n 64 && exec "$0" "$@"', process.execPath, script],
      {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    children.push(receiver);
    const heard: { type: string; code?: string }[] = [];

    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    const tracker = new ConnectionTracker(server, () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const mover = new ConnectionMover(
      // As a worker sends: true while the channel is open (Node queues what waits for an ack).
      (message, handle, written) => {
        if (!receiver.connected) return false;
        receiver.send(message, handle as never, {}, () => written?.());
        return true;
      },
      (socket, handedIn) => tracker.adopt(socket, handedIn),
    );
    receiver.on('message', (message: { type: string; code?: string }) => {
      heard.push(message);
      if (message.type === 'conn-answer') mover.onAnswer(message as ConnAnswer);
    });
    await waitFor('the receiver out of fds', () => heard.some((m) => m.type === 'full'));
    expect(heard[0]?.code).toBe('EMFILE');

    const load = startClients(port, 6);
    await waitFor('traffic', () => load.answered > 100);
    const poll = drainMoving(tracker, mover);
    const started = Date.now();
    try {
      // Without the handleless message delivered, none is answered before the offer's 5 s
      // (then 7 s: lost, closed here).
      await waitFor('offers refused', () => mover.outcomes.refused >= 12, 10_000);
    } finally {
      clearInterval(poll);
      await load.stop();
    }
    await waitFor('every offer answered', () => mover.pending === 0, 10_000);
    expect(Date.now() - started).toBeLessThan(MOVE_EXPIRES_MS);
    expect(load.errors).toEqual([]);
    expect(load.slowestMs).toBeLessThan(MOVE_EXPIRES_MS);
    expect(mover.outcomes.taken + mover.outcomes.lost).toBe(0);
    expect(heard.filter((m) => m.type === 'served')).toEqual([]);
  });
});

/** An HTTP server on loopback whose connections a tracker follows. */
async function trackedServer(): Promise<{ tracker: ConnectionTracker; port: number }> {
  const server = http.createServer((_req, res) => res.end('ok'));
  servers.push(server);
  const tracker = new ConnectionTracker(server, () => {});
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { tracker, port: (server.address() as AddressInfo).port };
}

/** `count` kept-alive clients on `port`, each answered once and then quiet. */
async function idleClients(port: number, count: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: count });
  agents.push(agent);
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port, agent }, (res) => res.resume().on('end', resolve))
            .on('error', reject);
        }),
    ),
  );
}

describe('offers and the channel they cross', () => {
  it('sends an offer once the one before it is written, its expires running from then, not from a queue in the worker', async () => {
    const { tracker, port } = await trackedServer();
    // A channel that writes one message every 200 ms, as Node's does with fds on a worker whose
    // loop turns slowly (each fd waits for the acknowledgement of the one before); the master
    // refuses every offer 50 ms after it is written.
    const sent: { id: number; at: number; expires: number }[] = [];
    let channelFreeAt = 0;
    const mover: ConnectionMover = new ConnectionMover(
      (message: ConnMessage | ConnAnswer, _handle, written) => {
        if (message.type !== 'conn') return true;
        sent.push({ id: message.id, at: Date.now(), expires: message.expires });
        channelFreeAt = Math.max(Date.now(), channelFreeAt) + 200;
        setTimeout(() => {
          written?.();
          const answer: ConnAnswer = { type: 'conn-answer', id: message.id, outcome: 'refused' };
          setTimeout(() => mover.onAnswer(answer), 50);
        }, channelFreeAt - Date.now());
        return true;
      },
      (socket, handedIn) => tracker.adopt(socket, handedIn),
    );
    await idleClients(port, 4);
    tracker.startDraining(true);
    mover.onRoom = () => tracker.moveIdle(mover);
    expect(tracker.moveIdle(mover)).toBe(4);
    await waitFor('four offers sent', () => sent.length === 4, 5000);
    for (const [i, offer] of sent.entries()) {
      expect(offer.expires - offer.at).toBeGreaterThan(MOVE_EXPIRES_MS - 5);
      expect(offer.expires - offer.at).toBeLessThanOrEqual(MOVE_EXPIRES_MS);
      // Sent at once, the fourth would have spent 600 ms of its 5 s in the queue.
      if (i > 0) expect(offer.at - (sent[i - 1]?.at ?? 0)).toBeGreaterThanOrEqual(190);
    }
    await waitFor('every offer answered', () => mover.pending === 0, 5000);
    expect(mover.outcomes.refused).toBe(4);
  });

  it('keeps 8 offers out while the loop turns quickly, and up to 128 once a turn came more than 50 ms late', async () => {
    const { tracker, port } = await trackedServer();
    // The master never answers: what is out stays out.
    const mover = new ConnectionMover(
      (_message, _handle, written) => {
        setImmediate(() => written?.());
        return true;
      },
      (socket, handedIn) => tracker.adopt(socket, handedIn),
    );
    await idleClients(port, 20);
    tracker.startDraining(true);
    expect(tracker.moveIdle(mover)).toBe(MIN_PENDING_OFFERS);
    mover.loopLate(SLOW_TURN_MS);
    expect(tracker.moveIdle(mover)).toBe(0);
    mover.loopLate(SLOW_TURN_MS + 1);
    expect(tracker.moveIdle(mover)).toBe(20 - MIN_PENDING_OFFERS);
    expect(mover.pending).toBe(20);
    expect(MAX_PENDING_OFFERS).toBeGreaterThan(20);
    mover.abandon();
  });
});
