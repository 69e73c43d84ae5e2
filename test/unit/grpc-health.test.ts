import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { grpcHealthCall, grpcVerdict, healthService } from '../../src/grpc/grpc-health.js';
import { openH2 } from '../../src/http2/h2-get.js';

/**
 * The health service as grpc-js serves it, with the messages as raw bytes: what prefork's
 * hand-encoded request carries, and what a SERVING (08 01) or other answer decodes to.
 */
const HEALTH = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
} satisfies grpc.ServiceDefinition;

/** `HealthCheckRequest.service`, decoded from the bytes prefork sent. */
function serviceOf(message: Buffer): string {
  if (message.length === 0) return '';
  let length = 0;
  let i = 1;
  for (let shift = 0; ; shift += 7, i += 1) {
    const byte = message[i] ?? 0;
    length |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
  }
  return message.subarray(i + 1, i + 1 + length).toString('utf8');
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A grpc-js server on loopback port 0 with `statuses` as its health service's answers. */
async function server(statuses: Record<string, number> | undefined): Promise<string> {
  const s = new grpc.Server();
  if (statuses !== undefined) {
    s.addService(HEALTH, {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const service = serviceOf(call.request);
        const status = statuses[service];
        if (status === undefined) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
        } else callback(null, Buffer.from([0x08, status]));
      },
    });
  }
  const port = await new Promise<number>((resolve, reject) =>
    s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  cleanups.push(() => s.forceShutdown());
  return `http://127.0.0.1:${port}`;
}

async function check(authority: string, service: string) {
  const session = openH2(authority);
  cleanups.push(() => session.destroy());
  return grpcVerdict(await grpcHealthCall(session, service, { timeoutMs: 5000 }), service);
}

describe('the gRPC health check', () => {
  it('reads SERVING as healthy and NOT_SERVING as not, for the service the path names', async () => {
    const long = `svc.${'x'.repeat(200)}`; // a name longer than one varint byte
    const at = await server({ '': 1, 'echo.Echo': 2, [long]: 1 });
    expect(await check(at, healthService('/'))).toEqual({ status: 200, problem: undefined });
    expect(await check(at, healthService(`/${long}`))).toEqual({ status: 200, problem: undefined });
    expect(await check(at, healthService('/echo.Echo'))).toEqual({
      status: 503,
      problem: 'gRPC health check of service "echo.Echo" answered NOT_SERVING',
    });
    const unknown = await check(at, 'other.Svc');
    expect(unknown.status).toBe(404);
    expect(unknown.problem).toContain(
      'the health service does not know it: unknown service other.Svc',
    );
  });

  it('reads a server without the health service as answering gRPC (404: healthy only without a health path)', async () => {
    const verdict = await check(await server(undefined), '');
    expect(verdict.status).toBe(404);
    expect(verdict.problem).toContain('the release has no grpc.health.v1 service');
  });

  it('rejects, naming the cause, when the server does not speak gRPC', async () => {
    const plain = http2.createServer((_req, res) => res.end('hello'));
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => plain.close());
    const { port } = plain.address() as AddressInfo;
    await expect(check(`http://127.0.0.1:${port}`, '')).rejects.toThrow(
      'no gRPC answer (HTTP status 200): the release does not serve gRPC here',
    );
  });
});
