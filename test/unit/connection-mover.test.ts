import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ConnAnswer, ConnMessage } from '../../src/protocol/moves.js';
import { ConnectionMover } from '../../src/worker/drain/connection-mover.js';
import { ConnectionTracker } from '../../src/worker/drain/connection-tracker.js';
import { waitFor } from '../helpers/processes.js';

const servers: http.Server[] = [];
const agents: http.Agent[] = [];

afterEach(() => {
  for (const agent of agents.splice(0)) agent.destroy();
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    server.close();
  }
});

describe('a move the next generation refuses', () => {
  it('serves the connection here again: the request its client sent meanwhile is answered, with Connection: close', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    servers.push(server);
    const tracker = new ConnectionTracker(server, () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // The master's answer to every offer, a few ms later: refused (no worker can take it).
    const mover: ConnectionMover = new ConnectionMover(
      (message: ConnMessage | ConnAnswer) => {
        if (message.type === 'conn') {
          const answer: ConnAnswer = { type: 'conn-answer', id: message.id, outcome: 'refused' };
          setTimeout(() => mover.onAnswer(answer), 5);
        }
        return true;
      },
      (socket, handedIn) => tracker.adopt(socket, handedIn),
    );

    // Six kept-alive clients, each sending its next request as soon as it has an answer: their
    // requests arrive while their connections are offered.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 6 });
    agents.push(agent);
    const errors: string[] = [];
    let answered = 0;
    let toldToClose = 0;
    let stop = false;
    const client = async () => {
      while (!stop) {
        await new Promise<void>((resolve) => {
          const req = http.get({ host: '127.0.0.1', port, agent }, (res) => {
            if (res.headers.connection === 'close') toldToClose += 1;
            res.resume();
            res.on('end', () => {
              answered += 1;
              resolve();
            });
          });
          req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
          req.on('error', (error: NodeJS.ErrnoException) => {
            errors.push(`${error.code ?? ''} ${error.message}`);
            resolve();
          });
        });
      }
    };
    const clients = Array.from({ length: 6 }, client);
    await waitFor('traffic', () => answered > 100);

    tracker.startDraining(true);
    mover.onRoom = () => tracker.moveIdle(mover);
    const poll = setInterval(() => {
      tracker.moveIdle(mover, true);
      tracker.closeIdle(250);
    }, 50);
    try {
      await waitFor('offers refused', () => mover.outcomes.refused >= 12, 10_000);
    } finally {
      clearInterval(poll);
      stop = true;
      await Promise.all(clients);
    }
    expect(errors).toEqual([]);
    // Every refused connection answered its next request, saying `Connection: close` (but for
    // up to one per client, refused once its client had stopped sending).
    expect(toldToClose).toBeGreaterThanOrEqual(mover.outcomes.refused - 6);
    expect(toldToClose).toBeLessThanOrEqual(mover.outcomes.refused);
    expect(mover.outcomes.taken + mover.outcomes.lost).toBe(0);
  });
});
