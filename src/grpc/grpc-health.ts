import type http2 from 'node:http2';

/** The standard health service's check (grpc/grpc `doc/health-checking.md`). */
const CHECK_PATH = '/grpc.health.v1.Health/Check';
/** gRPC status codes a health check tells apart. */
const OK = 0;
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;
/** `HealthCheckResponse.ServingStatus`. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];
const SERVING = 1;

/** How {@link grpcHealthCall} sends its call. */
export interface GrpcCallOptions {
  headers?: Record<string, string>;
  /** Fails the call when no data moved for this long; none when undefined. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** What a health check call got back: its gRPC status, and the serving status when it is OK. */
export interface GrpcHealthAnswer {
  grpcStatus: number;
  grpcMessage: string;
  /** `HealthCheckResponse.status` (0, UNKNOWN, when the field is absent). */
  serving: number;
}

/**
 * The health service a health path names: `--health-path /echo.Echo` checks the service
 * `echo.Echo`, `/` the server as a whole (the empty service name).
 */
export function healthService(path: string): string {
  return path.replace(/^\/+/, '');
}

/** A protobuf varint. */
function varint(value: number): number[] {
  const bytes: number[] = [];
  let rest = value;
  while (rest > 0x7f) {
    bytes.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  bytes.push(rest);
  return bytes;
}

/**
 * `HealthCheckRequest { string service = 1; }` in one gRPC message frame (a byte saying it is
 * not compressed, the length as 4 bytes big-endian, the message), encoded by hand: one string
 * field is all of it, and a protobuf library would be a dependency for these few lines.
 */
function requestFrame(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const message =
    name.length === 0
      ? Buffer.alloc(0)
      : Buffer.concat([Buffer.from([0x0a, ...varint(name.length)]), name]);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return frame;
}

/**
 * `HealthCheckResponse { ServingStatus status = 1; }` from the first message frame of `body`:
 * the status, 0 (UNKNOWN) when absent. Other fields a newer health service may add are skipped
 * only as far as this one is found first, which is how the service encodes it.
 */
function servingStatus(body: Buffer): number {
  if (body.length < 5) return 0;
  const length = body.readUInt32BE(1);
  const message = body.subarray(5, 5 + length);
  if (message[0] !== 0x08) return 0;
  let value = 0;
  for (let i = 1, shift = 0; i < message.length && shift < 35; i += 1, shift += 7) {
    const byte = message[i] ?? 0;
    value |= (byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) break;
  }
  return value;
}

/**
 * Calls `grpc.health.v1.Health/Check` for `service` on `session`. Resolves with the call's
 * gRPC status (from the trailers, or from the headers of a trailers-only answer) and the
 * serving status; rejects when the stream fails, is aborted through `signal`, ends without a
 * gRPC status (the server does not speak gRPC), or `timeoutMs` passes first.
 */
export function grpcHealthCall(
  session: http2.ClientHttp2Session,
  service: string,
  options: GrpcCallOptions = {},
): Promise<GrpcHealthAnswer> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(
        {
          ':method': 'POST',
          ':path': CHECK_PATH,
          'content-type': 'application/grpc',
          te: 'trailers',
          ...options.headers,
        },
        options.signal && { signal: options.signal },
      );
    } catch (error) {
      reject(error);
      return;
    }
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message = '';
    let httpStatus = 0;
    const read = (headers: http2.IncomingHttpHeaders) => {
      const value = headers['grpc-status'];
      if (value !== undefined) status = String(value);
      if (headers['grpc-message'] !== undefined)
        message = decodeURIComponent(String(headers['grpc-message']));
    };
    stream.once('response', (headers) => {
      httpStatus = Number(headers[':status']);
      read(headers);
    });
    stream.once('trailers', read);
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('error', reject);
    stream.once('close', () => {
      if (status === undefined) {
        const what = httpStatus === 0 ? `code ${stream.rstCode}` : `HTTP status ${httpStatus}`;
        reject(new Error(`no gRPC answer (${what}): the release does not serve gRPC here`));
        return;
      }
      const grpcStatus = Number(status);
      const serving = grpcStatus === OK ? servingStatus(Buffer.concat(chunks)) : 0;
      resolve({ grpcStatus, grpcMessage: message, serving });
    });
    if (options.timeoutMs !== undefined) {
      const ms = Math.max(1, options.timeoutMs);
      stream.setTimeout(ms, () => stream.destroy(new Error(`no answer within ${ms} ms`)));
    }
    stream.end(requestFrame(service));
  });
}

/** A health check's answer as prefork reads it. */
export interface GrpcHealthVerdict {
  /**
   * The answer on the HTTP scale the other health checks use (`isHealthy`): 200 serving, 404
   * no health service or no such service (healthy without a health path, not with one), 503
   * not serving or any other gRPC error.
   */
  status: number;
  /** What was wrong, in gRPC's terms; undefined when serving. */
  problem: string | undefined;
}

/**
 * Reads a health check's answer: SERVING is healthy; an app without the health service (or
 * without `service` registered in it) answered gRPC, which is healthy when no health path was
 * asked for, as any HTTP answer below 500 is; NOT_SERVING, UNKNOWN or another gRPC error is not.
 */
export function grpcVerdict(answer: GrpcHealthAnswer, service: string): GrpcHealthVerdict {
  const check = `gRPC health check of ${service === '' ? 'the server' : `service "${service}"`}`;
  const { grpcStatus, grpcMessage, serving } = answer;
  if (grpcStatus === OK && serving === SERVING) return { status: 200, problem: undefined };
  if (grpcStatus === OK) {
    return { status: 503, problem: `${check} answered ${SERVING_STATUS[serving] ?? serving}` };
  }
  const why = grpcMessage === '' ? '' : `: ${grpcMessage}`;
  if (grpcStatus === UNIMPLEMENTED) {
    return { status: 404, problem: `${check}: the release has no grpc.health.v1 service${why}` };
  }
  if (grpcStatus === NOT_FOUND) {
    return { status: 404, problem: `${check}: the health service does not know it${why}` };
  }
  return { status: 503, problem: `${check} failed with gRPC status ${grpcStatus}${why}` };
}
