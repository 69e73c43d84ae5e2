import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ConnectionTracker } from '../../src/worker/drain/connection-tracker.js';
import { drainConnections } from '../../src/worker/drain/drain.js';
import { grpcFront } from '../../src/worker/grpc-front.js';
import { waitFor } from '../helpers/processes.js';
import { TLS_DIR } from '../helpers/repo.js';

const servers: net.Server[] = [];
const sockets: net.Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const server of servers.splice(0)) server.close();
});

/** An HTTPS server on a free loopback port, its connections tracked as a worker tracks them. */
async function httpsServer(): Promise<{ server: https.Server; tracker: ConnectionTracker }> {
  const server = https.createServer(
    {
      key: readFileSync(join(TLS_DIR, 'key.pem')),
      cert: readFileSync(join(TLS_DIR, 'cert.pem')),
    },
    (_req, res) => res.end('ok'),
  );
  const tracker = new ConnectionTracker(server, () => {});
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, tracker };
}

function portOf(server: net.Server): number {
  return (server.address() as net.AddressInfo).port;
}

/**
 * A TCP connection whose writes after the first (the ClientHello) are held back until
 * `release()`: a client caught mid-handshake, the server waiting for its second flight.
 */
function heldConnection(port: number): { duplex: Duplex; release: () => void } {
  const tcp = net.connect(port, '127.0.0.1');
  sockets.push(tcp);
  let writes = 0;
  let held: Buffer[] | undefined = [];
  const duplex = new Duplex({
    read: () => void tcp.resume(),
    write(chunk: Buffer, _encoding, callback) {
      writes += 1;
      if (writes > 1 && held !== undefined) held.push(chunk);
      else tcp.write(chunk);
      callback();
    },
    final(callback) {
      tcp.end();
      callback();
    },
  });
  tcp.on('data', (data) => {
    if (!duplex.push(data)) tcp.pause();
  });
  tcp.on('end', () => duplex.push(null));
  tcp.on('error', (error) => duplex.destroy(error));
  return {
    duplex,
    release: () => {
      for (const chunk of held ?? []) tcp.write(chunk);
      held = undefined;
    },
  };
}

function drainOf(server: net.Server, tracker: ConnectionTracker): Promise<void> {
  return drainConnections(
    {
      app: { server, drain: undefined, close: undefined },
      listeners: [server],
      tracker,
      logger: pino({ level: 'silent' }),
    },
    { gracefulTimeoutMs: 10_000, goodbyeWindowMs: 0, keepAliveMinTimeoutMs: 250 },
    'test',
  );
}

describe('the drain of an HTTPS worker', () => {
  it('counts a connection from its first byte, and once (raw socket, then TLS socket)', async () => {
    const { server, tracker } = await httpsServer();
    const client = tls.connect({
      port: portOf(server),
      host: '127.0.0.1',
      rejectUnauthorized: false,
    });
    sockets.push(client);
    await new Promise((resolve) => client.once('secureConnect', resolve));
    // Node names the socket a TLS socket wraps `_parent` (the tracker relies on it): after the
    // handshake the connection counts once, as a TLS connection.
    await waitFor('the handshake on the server', () => tracker.counts().byKind.http1_idle === 1);
    expect(tracker.counts()).toEqual({ byKind: { http1_idle: 1 }, streams: 0 });
    expect(tracker.size).toBe(1);
    client.destroy();
    await waitFor('the connection gone', () => tracker.size === 0);
  });

  it('waits for a client caught mid-handshake and answers its request', async () => {
    const { server, tracker } = await httpsServer();
    const { duplex, release } = heldConnection(portOf(server));
    const client = tls.connect({ socket: duplex, rejectUnauthorized: false });
    sockets.push(client);
    // TLS 1.3: the client has the server's whole flight; its Finished is held back.
    await new Promise((resolve) => client.once('secureConnect', resolve));
    expect(tracker.counts()).toEqual({ byKind: { tls_handshake: 1 }, streams: 0 });
    let answer = '';
    client.on('data', (data) => {
      answer += data;
    });
    // The server closes its end after the answer (`Connection: close`).
    const ended = new Promise((resolve) => client.once('end', resolve));
    client.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');

    let drained = false;
    const drain = drainOf(server, tracker).then(() => {
      drained = true;
    });
    // Well inside the idle-close time (250 ms): the drain must not end while the handshake runs.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(drained).toBe(false);
    release();
    await ended;
    await drain;
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
    expect(answer).toMatch(/\r\n\r\nok$/);
  });

  it('closes a TCP connection that never starts its handshake once it has been idle', async () => {
    const { server, tracker } = await httpsServer();
    const idle = net.connect(portOf(server), '127.0.0.1');
    sockets.push(idle);
    const ended = new Promise((resolve) => idle.once('close', resolve));
    await waitFor('the connection on the server', () => tracker.size === 1);
    const started = Date.now();
    await drainOf(server, tracker);
    await ended;
    // Closed by the idle rule (2 s for a connection with no byte yet), not held to the
    // graceful timeout (10 s).
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('the drain of an HTTP/2-over-TLS worker', () => {
  it('sends a GOAWAY to a session whose handshake finishes after the drain began, not waiting for the graceful timeout', async () => {
    const server = http2.createSecureServer(
      {
        key: readFileSync(join(TLS_DIR, 'key.pem')),
        cert: readFileSync(join(TLS_DIR, 'cert.pem')),
      },
      (_req, res) => setTimeout(() => res.end('ok'), 2),
    );
    const tracker = new ConnectionTracker(server, () => {});
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // TLS 1.3: the raw connection counts until the server has the client's Finished.
    await drainWithLateSession(server, tracker, { tls_handshake: 1 }, { ':path': '/' });
  });
});

/**
 * The drain of `server` begins while a client is mid-handshake (counted as `counted`), whose
 * Finished is held back until then; its session then keeps two requests (`headers`, `body`) in
 * flight at all times, as browsers and gRPC channels do, until it is told to go away. Expects
 * a GOAWAY (NO_ERROR) before the drain ends, the drain over well inside its graceful timeout
 * (10 s: it held the drain when only the sessions open at its start were told), no stream
 * failed (each answered, or refused unprocessed for the client to retry), nothing left open.
 */
async function drainWithLateSession(
  server: net.Server,
  tracker: ConnectionTracker,
  counted: Record<string, number>,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
): Promise<void> {
  const { duplex, release } = heldConnection(portOf(server));
  const socket = tls.connect({ socket: duplex, ALPNProtocols: ['h2'], rejectUnauthorized: false });
  sockets.push(socket);
  await new Promise((resolve) => socket.once('secureConnect', resolve));
  expect(tracker.counts()).toEqual({ byKind: counted, streams: 0 });

  const started = Date.now();
  const drain = drainOf(server, tracker);
  release();
  const session = http2.connect('https://localhost', { createConnection: () => socket });
  const goaway = new Promise<number>((resolve) => session.once('goaway', resolve));
  session.on('error', () => {});
  const seen = { answered: 0, refused: 0, failures: [] as string[] };
  const lane = async (): Promise<void> => {
    while (!session.closed && !session.destroyed) {
      await new Promise<void>((resolve) => {
        const stream = session.request(headers);
        stream.resume();
        stream.on('end', () => {
          seen.answered += 1;
          resolve();
        });
        stream.on('error', () => {
          if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) seen.refused += 1;
          else seen.failures.push(`rst ${stream.rstCode}`);
          resolve();
        });
        stream.end(body);
      });
    }
  };
  const lanes = Promise.all([lane(), lane()]);
  expect(await Promise.race([goaway, drain.then(() => 'the drain ended first')])).toBe(
    http2.constants.NGHTTP2_NO_ERROR,
  );
  await drain;
  await lanes;
  expect(Date.now() - started).toBeLessThan(5_000);
  expect(seen.failures).toEqual([]);
  expect(seen.answered + seen.refused).toBeGreaterThan(0);
  expect(tracker.size).toBe(0);
}

describe('the drain of a gRPC-over-TLS worker (grpc-js behind prefork)', () => {
  it('has grpc-js send a GOAWAY to a session whose handshake finishes after the drain began, not waiting for the graceful timeout', async () => {
    const key = readFileSync(join(TLS_DIR, 'key.pem'));
    const cert = readFileSync(join(TLS_DIR, 'cert.pem'));
    const grpcServer = new grpc.Server();
    const raw = (b: Buffer) => b;
    grpcServer.addService(
      {
        Say: {
          path: '/test.Echo/Say',
          requestStream: false,
          responseStream: false,
          requestSerialize: raw,
          requestDeserialize: raw,
          responseSerialize: raw,
          responseDeserialize: raw,
        },
      },
      {
        Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) =>
          setTimeout(() => callback(null, call.request), 2),
      },
    );
    const credentials = grpc.ServerCredentials.createSsl(null, [
      { private_key: key, cert_chain: cert },
    ]);
    const front = await grpcFront(
      grpcServer as Parameters<typeof grpcFront>[0],
      'test',
      credentials,
    );
    servers.push(front);
    const tracker = new ConnectionTracker(front, () => {});
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    // A unary call: its message framed as gRPC frames it (no compression, 4-byte length).
    const message = Buffer.from('hi');
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const headers = {
      ':method': 'POST',
      ':path': '/test.Echo/Say',
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    // grpc-js's connections count as such from their first byte.
    await drainWithLateSession(front, tracker, { grpc: 1 }, headers, frame);
  });
});

describe('the drain of a connection whose first request is late', () => {
  it('answers a request that comes 1 s after its connection, not closing it as idle at 250 ms', async () => {
    const server = http.createServer((_req, res) => res.end('ok'));
    const tracker = new ConnectionTracker(server, () => {});
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect(portOf(server), '127.0.0.1');
    sockets.push(client);
    let answer = '';
    client.on('data', (data) => {
      answer += data;
    });
    const closed = new Promise((resolve) => client.once('close', resolve));
    await waitFor('the connection on the server', () => tracker.size === 1);
    const drain = drainOf(server, tracker);
    // A client slow to send what it connected for (a reconnect storm): well past the 250 ms
    // after which a kept-alive connection counts as idle.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    client.write('GET / HTTP/1.1\r\nHost: t\r\n\r\n');
    await closed;
    await drain;
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(answer).toMatch(/\r\nConnection: close\r\n/i);
  });
});
