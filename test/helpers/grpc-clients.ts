import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { REPO } from './repo.js';

/** The example release's service (docs/examples/grpc/echo.proto). */
const PROTO = `${REPO}/docs/examples/grpc/echo.proto`;
/** Answers a server-streaming call asks for (5 ms apart: the call is open for about 100 ms). */
const COUNT_N = 20;

interface Reply {
  text: string;
  release: string;
  pid: number;
}

interface EchoClient extends grpc.Client {
  Say(
    request: { text: string },
    callback: (error: grpc.ServiceError | null, reply: Reply) => void,
  ): void;
  Count(request: { n: number }): grpc.ClientReadableStream<Reply>;
}

/** What a pool of gRPC clients saw. */
export interface GrpcResult {
  /** Unary calls answered, by the release that answered. */
  unary: Record<string, number>;
  /** Server-streaming calls that got all their answers, by the release that answered. */
  streams: Record<string, number>;
  /** Calls that failed in any way (the first few, with the time and the gRPC status). */
  failed: number;
  errors: string[];
}

export interface GrpcPool {
  result: GrpcResult;
  /** The release that answered each client's latest call. */
  latest(): Record<string, number>;
  /** Calls answered since the pool started. */
  answered(): number;
  /** Stops calling, waits for the calls in flight, closes every channel. */
  stop(): Promise<GrpcResult>;
}

/**
 * `clients` gRPC clients of the example release, each on its own channel (its own HTTP/2
 * connection: grpc-js would otherwise share one between clients of the same address), as
 * services calling a gRPC backend behave: each makes unary calls one after another, and
 * every fourth call is a server-streaming one. grpc-js reconnects on a GOAWAY and retries a
 * call the server refused unprocessed by itself (a transparent retry); anything a caller
 * would see fail counts as a failure.
 */
export function startGrpcClients(
  address: string,
  clients: number,
  credentials = grpc.credentials.createInsecure(),
  channelOptions: Record<string, string | number> = {},
): GrpcPool {
  const definition = protoLoader.loadSync(PROTO);
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    echo: {
      Echo: new (
        address: string,
        credentials: grpc.ChannelCredentials,
        options: object,
      ) => EchoClient;
    };
  };
  const result: GrpcResult = { unary: {}, streams: {}, failed: 0, errors: [] };
  const latest: string[] = [];
  let answered = 0;
  let stopped = false;
  const fail = (what: string) => {
    result.failed += 1;
    if (result.errors.length < 20) result.errors.push(`${new Date().toISOString()} ${what}`);
  };
  const say = (client: EchoClient, i: number): Promise<string | undefined> =>
    new Promise((resolve) => {
      client.Say({ text: String(i) }, (error, reply) => {
        if (error) {
          fail(`Say: ${error.code} ${error.details}`);
          return resolve(undefined);
        }
        if (reply.text !== String(i)) fail(`Say ${i} answered ${reply.text}`);
        result.unary[reply.release] = (result.unary[reply.release] ?? 0) + 1;
        resolve(reply.release);
      });
    });
  const count = (client: EchoClient): Promise<string | undefined> =>
    new Promise((resolve) => {
      const call = client.Count({ n: COUNT_N });
      const got: Reply[] = [];
      call.on('data', (reply: Reply) => got.push(reply));
      call.on('error', (error: grpc.ServiceError) => {
        fail(`Count: ${error.code} ${error.details} after ${got.length} answers`);
        resolve(undefined);
      });
      call.on('end', () => {
        const release = got[0]?.release;
        if (got.length !== COUNT_N || release === undefined) {
          fail(`Count ended after ${got.length} of ${COUNT_N} answers`);
          return resolve(undefined);
        }
        result.streams[release] = (result.streams[release] ?? 0) + 1;
        resolve(release);
      });
    });
  const lane = async (index: number): Promise<void> => {
    const client = new loaded.echo.Echo(address, credentials, {
      'grpc.use_local_subchannel_pool': 1,
      ...channelOptions,
    });
    try {
      for (let i = 0; !stopped; i += 1) {
        const release = await (i % 4 === 3 ? count(client) : say(client, i));
        if (release !== undefined) {
          latest[index] = release;
          answered += 1;
        }
      }
    } finally {
      client.close();
    }
  };
  const lanes = Array.from({ length: clients }, (_, i) => lane(i));
  return {
    result,
    latest: () => {
      const byRelease: Record<string, number> = {};
      for (const release of latest) byRelease[release] = (byRelease[release] ?? 0) + 1;
      return byRelease;
    },
    answered: () => answered,
    stop: async () => {
      stopped = true;
      await Promise.all(lanes);
      return result;
    },
  };
}
