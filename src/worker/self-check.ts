import type { IncomingMessage, ServerResponse } from 'node:http';
import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import type { WorkerHealthReply, WorkerHealthRequest } from '../protocol/ipc.js';
import { httpProtocolOf, isHttp2 } from './http-protocol.js';
import { PrivateEndpoint } from './private-endpoint.js';

/** Header that marks the health request, so the app's server can be watched answering it. */
const CHECK_HEADER = 'x-prefork-health-check';

/**
 * Answers a master's {@link WorkerHealthRequest}: GETs the path from this worker's own app
 * through a {@link PrivateEndpoint} opened for the one request, so the answer is this
 * release's even while another generation accepts on the same listen sockets.
 *
 * How a slow worker is told from an unhealthy app: the app's answer is timed from the moment
 * the request reaches it (the server's `request` event) to the moment its response is handed
 * to the kernel (`finish`), and must come within `answerMs`. The time before that — the worker
 * busy serving other clients on a saturated machine, accepting and parsing — is not the app
 * failing: it is bounded by `reachMs` (the heartbeat timeout, past which a stuck worker is
 * killed anyway). The status is read on the server side, so a busy worker need not turn its
 * loop again to read its own response.
 */
export async function checkSelf(
  server: net.Server,
  request: WorkerHealthRequest,
): Promise<WorkerHealthReply> {
  const reply = (status: number | null, error: string | null): WorkerHealthReply => ({
    type: 'health',
    id: request.id,
    status,
    error,
  });
  if (httpProtocolOf(server) === 'grpc') return checkGrpcSelf(server, request, reply);
  const id = `${process.pid}-${request.id}`;
  const abort = new AbortController();
  let endpoint: PrivateEndpoint | undefined;
  // HTTP/2 apps are watched on their streams: a `request` listener would turn on Node's
  // compatibility layer for an app that serves `stream` events itself.
  const event = isHttp2(server) ? 'stream' : 'request';
  let onRequest: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let onStream: ((stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  let reached = false;
  try {
    endpoint = await PrivateEndpoint.open(server);
    const answered = new Promise<number>((resolve, reject) => {
      const fail = (message: string) => reject(new Error(message));
      timer = setTimeout(
        () => fail(`the request did not reach the app within ${request.reachMs} ms (busy worker)`),
        request.reachMs,
      );
      const reachedApp = () => {
        reached = true;
        clearTimeout(timer);
        timer = setTimeout(
          () => fail(`the app did not answer within ${request.answerMs} ms`),
          request.answerMs,
        );
      };
      onRequest = (req, res) => {
        if (req.headers[CHECK_HEADER] !== id) return;
        reachedApp();
        res.once('finish', () => resolve(res.statusCode));
        res.once('close', () => {
          if (!res.writableFinished) fail('the app closed the connection without answering');
        });
      };
      onStream = (stream, headers) => {
        if (headers[CHECK_HEADER] !== id) return;
        reachedApp();
        stream.once('finish', () => resolve(Number(stream.sentHeaders?.[':status'] ?? 0)));
        stream.once('close', () => {
          if (!stream.writableFinished) fail('the app closed the stream without answering');
        });
      };
      if (event === 'stream') server.prependListener('stream', onStream);
      else server.prependListener('request', onRequest);
    });
    // The client side only carries the request: its failure counts only while the app has not
    // seen the request (after that, the app's side above tells what happened).
    const sent = endpoint.get(request.path, {
      userAgent: 'prefork-health',
      headers: { [CHECK_HEADER]: id },
      signal: abort.signal,
    });
    const clientFailed = sent.then(
      () => answered,
      (error: Error) => (reached ? answered : Promise.reject(error)),
    );
    // Whichever loses the race below may still settle later (the abort in `finally`).
    answered.catch(() => {});
    clientFailed.catch(() => {});
    return reply(await Promise.race([answered, clientFailed]), null);
  } catch (error) {
    return reply(null, (error as Error).message);
  } finally {
    clearTimeout(timer);
    if (onRequest) server.removeListener('request', onRequest);
    if (onStream) server.removeListener('stream', onStream);
    abort.abort();
    endpoint?.close();
  }
}

/**
 * {@link checkSelf} for a grpc-js app, whose calls cannot be watched arriving (grpc-js keeps
 * its HTTP/2 server to itself): one health check call, bounded by the time to reach the app
 * and the time to answer together. The reply carries the status on the HTTP scale and, when
 * unhealthy, what gRPC said.
 */
async function checkGrpcSelf(
  server: net.Server,
  request: WorkerHealthRequest,
  reply: (status: number | null, error: string | null) => WorkerHealthReply,
): Promise<WorkerHealthReply> {
  let endpoint: PrivateEndpoint | undefined;
  try {
    endpoint = await PrivateEndpoint.open(server);
    const verdict = await endpoint.checkGrpc(request.path, {
      userAgent: 'prefork-health',
      timeoutMs: request.reachMs + request.answerMs,
    });
    return reply(verdict.status, verdict.problem ?? null);
  } catch (error) {
    return reply(null, (error as Error).message);
  } finally {
    endpoint?.close();
  }
}
