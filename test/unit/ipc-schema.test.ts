import * as v from 'valibot';
import { describe, expect, it } from 'vitest';
import {
  MasterMessageSchema,
  WorkerMessageSchema,
  WorkerOptionsSchema,
} from '../../src/protocol/ipc.js';

// The master ⇄ worker boundary: a worker file may be newer than the master that spawns it (an
// install replaced in place while an old master runs), and the app shares the channel.
describe('worker IPC', () => {
  it('reads the worker options of the first prefork: the fields added since default to what their absence meant', () => {
    const first = {
      releaseDir: '/srv/app/releases/v1',
      entry: '/srv/app/releases/v1/index.js',
      release: 'v1',
      sockets: ['127.0.0.1:8000'],
      gracefulTimeoutMs: 30_000,
      heartbeatMs: 1000,
      maxRequests: 0,
      warmup: 0,
      warmupPath: '/',
      warmupTimeoutMs: 5000,
      logLevel: 'info',
    };
    expect(v.parse(WorkerOptionsSchema, first)).toEqual({
      ...first,
      // The goodbye window's default: a master that does not send it has no such setting.
      goodbyeWindowMs: 5000,
      // The quiet time a drain always waited before closing an idle connection.
      keepAliveMinTimeoutMs: 250,
      metrics: false,
      canary: false,
      // An older master moves no connection: its workers close them as they always did.
      moveConnections: false,
    });
    const wrong = v.safeParse(WorkerOptionsSchema, { ...first, sockets: '127.0.0.1:8000' });
    expect(wrong.success).toBe(false);
  });

  it("reads the first masters' health check (one timeoutMs) as today's two bounds", () => {
    expect(
      v.parse(MasterMessageSchema, { type: 'health-check', id: 1, path: '/', timeoutMs: 800 }),
    ).toEqual({ type: 'health-check', id: 1, path: '/', answerMs: 800, reachMs: 800 });
    expect(
      v.parse(MasterMessageSchema, {
        type: 'health-check',
        id: 2,
        path: '/h',
        answerMs: 100,
        reachMs: 3000,
      }),
    ).toEqual({ type: 'health-check', id: 2, path: '/h', answerMs: 100, reachMs: 3000 });
  });

  it("tells prefork's worker messages from an app's own", () => {
    // A worker of an older prefork says none: HTTP/1.1 without TLS, drained by its signal.
    expect(v.parse(WorkerMessageSchema, { type: 'ready' })).toEqual({
      type: 'ready',
      tls: false,
      http: 'http/1.1',
      moves: false,
    });
    expect(v.parse(WorkerMessageSchema, { type: 'ready', tls: true, http: 'h2' }).type).toBe(
      'ready',
    );
    expect(v.safeParse(WorkerMessageSchema, { type: 'ready', http: 'h3' }).success).toBe(false);
    expect(
      v.safeParse(WorkerMessageSchema, { type: 'heartbeat', requests: 3, rss: 9 }).success,
    ).toBe(true);
    for (const stray of [
      'ready',
      { type: 'heartbeat', requests: 'many' },
      { type: 'heartbeat', requests: 1, rss: 1, figures: { codes: [1] } },
      { topic: 'app' },
      null,
    ]) {
      expect(v.safeParse(WorkerMessageSchema, stray).success, JSON.stringify(stray)).toBe(false);
    }
  });
});
