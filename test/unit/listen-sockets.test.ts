import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseBind } from '../../src/config/bind.js';
import { handedSocketsEnv, readInheritedFds } from '../../src/handover/handed-sockets.js';
import { closeListenSockets, openListenSockets } from '../../src/handover/listen-sockets.js';

// Pins the semi-private Node API the master relies on: net._createServerHandle binds without
// listening, the bound fd can be handed to a child at fd 3, and the child's listen({ fd: 3 })
// serves on it while this process never accepts.
describe('listen sockets (pins net._createServerHandle)', () => {
  it('binds without accepting; a child listening on fd 3 serves', async () => {
    expect(typeof (net as unknown as { _createServerHandle: unknown })._createServerHandle).toBe(
      'function',
    );
    const [socket] = await openListenSockets([parseBind('127.0.0.1:0')], []);
    if (socket === undefined) throw new Error('no socket');
    expect(socket.port).toBeGreaterThan(0);
    // Nothing listens yet: a connection is refused (the master alone never accepts).
    const refused = await new Promise<string>((resolve) => {
      net
        .connect(socket.port as number, '127.0.0.1')
        .on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''))
        .on('connect', () => resolve('connected'));
    });
    expect(refused).toBe('ECONNREFUSED');
    const child = spawn(
      process.execPath,
      [
        '-e',
        `
      require('http').createServer((q, r) => r.end(String(process.pid))).listen({ fd: 3 }, () => process.send('up'));
    `,
      ],
      { stdio: ['ignore', 'inherit', 'inherit', socket.fd, 'ipc'] },
    );
    await new Promise((resolve) => child.once('message', resolve));
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: socket.port, agent: false }, (res) => {
          let text = '';
          res.on('data', (c) => {
            text += c;
          });
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(body).toBe(String(child.pid));
    child.kill('SIGKILL');
    closeListenSockets([socket], { newMaster: undefined, oldMasterAlive: false });
  });

  it('reports a port in use (EADDRINUSE deferred by libuv)', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await expect(openListenSockets([parseBind(`127.0.0.1:${port}`)], [])).rejects.toThrow(
      /already in use/,
    );
    server.close();
  });
});

describe('inherited fds', () => {
  it('reads PREFORK_FDS with names and kinds, and systemd LISTEN_FDS only for this pid', () => {
    expect(
      readInheritedFds(
        {
          PREFORK_FDS: '3,4,5',
          PREFORK_FD_NAMES: '127.0.0.1:80,systemd:web,metrics:127.0.0.1:9100',
        },
        1,
      ),
    ).toEqual([
      { fd: 3, name: '127.0.0.1:80', systemd: false, metrics: false },
      { fd: 4, name: 'web', systemd: true, metrics: false },
      { fd: 5, name: '127.0.0.1:9100', systemd: false, metrics: true },
    ]);
    expect(
      readInheritedFds({ LISTEN_FDS: '2', LISTEN_PID: '7', LISTEN_FDNAMES: 'a:b' }, 7),
    ).toEqual([
      { fd: 3, name: 'a', systemd: true, metrics: false },
      { fd: 4, name: 'b', systemd: true, metrics: false },
    ]);
    expect(readInheritedFds({ LISTEN_FDS: '2', LISTEN_PID: '8' }, 7)).toEqual([]);
    expect(() => readInheritedFds({ PREFORK_FDS: '3,x' }, 1)).toThrow(/PREFORK_FDS/);
  });

  it('hands sockets over as JSON, so a bind may hold a comma; the comma-joined pair only when it can carry them', () => {
    const sockets = [
      { bind: { name: 'unix:/run/app,v2.sock' }, systemd: false, metrics: false },
      { bind: { name: '127.0.0.1:9100' }, systemd: false, metrics: true },
      { bind: { name: 'web' }, systemd: true, metrics: false },
    ];
    const env = handedSocketsEnv(sockets);
    // A bind with a comma cannot be carried by PREFORK_FD_NAMES (split on commas).
    expect(env.PREFORK_FDS).toBeUndefined();
    expect(readInheritedFds(env, 1)).toEqual([
      { fd: 3, name: 'unix:/run/app,v2.sock', systemd: false, metrics: false },
      { fd: 4, name: '127.0.0.1:9100', systemd: false, metrics: true },
      { fd: 5, name: 'web', systemd: true, metrics: false },
    ]);
    // Without a comma, a new master of an older prefork (protocol 1 or 2) reads the pair.
    const plain = handedSocketsEnv(sockets.slice(1));
    expect(
      readInheritedFds(
        { PREFORK_FDS: plain.PREFORK_FDS, PREFORK_FD_NAMES: plain.PREFORK_FD_NAMES },
        1,
      ),
    ).toEqual(readInheritedFds(plain, 1));
    expect(() => readInheritedFds({ PREFORK_SOCKETS: '{"sockets":[{"fd":1}]}' }, 1)).toThrow(
      /PREFORK_SOCKETS is not a list of sockets/,
    );
  });
});
