import type { RequestListener } from 'node:http';
import http from 'node:http';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { grpcFront, isGrpcServer } from './grpc-front.js';

/** A loaded app: the server to listen with, and its optional `drain()` and `close()` hooks. */
export interface LoadedApp {
  /** The app's own unlistened server, or one prefork made around its request listener. */
  server: net.Server;
  /** The app's named export `drain(info)`, called as its worker's drain starts (`DrainInfo`). */
  drain: ((info: object) => unknown) | undefined;
  /** The app's named export `close()`, awaited after the last connection closed. */
  close: (() => unknown) | undefined;
}

/**
 * The app's named export `name`: an ESM named export, or (CommonJS) a property of the
 * exported listener function, called on it.
 */
function namedHook<A extends unknown[]>(
  mod: Record<string, unknown>,
  exported: unknown,
  name: 'drain' | 'close',
): ((...args: A) => unknown) | undefined {
  if (typeof mod[name] === 'function') return mod[name] as (...args: A) => unknown;
  const own = (exported as Record<string, unknown> | null)?.[name];
  if (typeof exported === 'function' && typeof own === 'function') {
    return (...args: A) => (own as (...a: A) => unknown).apply(exported, args);
  }
  return undefined;
}

/** Thrown when the entry loads but exports nothing prefork can serve. */
export class AppContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AppContractError';
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `a function of ${value.length} parameters`;
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'Object'})`;
  return typeof value;
}

/** An object with a Web-standard `fetch(request)` handler (Hono, itty-router, ...). */
type FetchApp = { fetch: (request: Request, ...rest: unknown[]) => unknown };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/**
 * Turns a default export into a server, per the app contract (README, "Quick start"): a request listener
 * `(req, res)`, an `http.Server`/`https.Server` that is not listening yet, or a function (sync
 * or async, taking no arguments) returning one of those. Framework objects are taken as they
 * are exported, so no example needs glue: a Koa app (`callback()`), a Fastify instance
 * (`server` + `ready()`, awaited), or anything with a Web-standard `fetch(request)` such as a
 * Hono app (served through @hono/node-server's adapter, loaded only then). A grpc-js `Server`,
 * exported unbound, is served through its connection injector (`grpc-front.ts`), with the
 * module's named export `credentials` when it has one.
 */
async function toServer(
  exported: unknown,
  entry: string,
  mod: Record<string, unknown>,
  depth = 0,
): Promise<net.Server> {
  if (exported instanceof net.Server) {
    if (exported.listening) {
      throw new AppContractError(
        `${entry} exports a server that is already listening: export it unlistened, prefork listens it on the inherited sockets`,
      );
    }
    return exported;
  }
  if (typeof exported === 'function') {
    if (exported.length >= 2) return http.createServer(exported as RequestListener);
    if (depth === 0) return toServer(await (exported as () => unknown)(), entry, mod, depth + 1);
  }
  if (isGrpcServer(exported)) {
    // A grpc-js Server, exported unbound: served through its connection injector.
    return grpcFront(exported, entry, mod.credentials).catch((error: Error) => {
      throw new AppContractError(error.message);
    });
  }
  if (isObject(exported)) {
    if (exported.server instanceof net.Server) {
      if (typeof exported.ready === 'function') await (exported.ready as () => unknown)();
      return toServer(exported.server, entry, mod, depth + 1);
    }
    if (typeof exported.callback === 'function') {
      return http.createServer((exported.callback as () => RequestListener)());
    }
    if (typeof exported.fetch === 'function') {
      const { getRequestListener } = await import('@hono/node-server');
      const app = exported as FetchApp;
      return http.createServer(getRequestListener((request, env) => app.fetch(request, env)));
    }
  }
  throw new AppContractError(
    `${entry} must export (default or module.exports) a request listener (req, res), an unlistened http.Server or http2 server, a grpc-js Server, a Koa, Fastify or fetch-style (Hono) app, or a function returning one; it exports ${describe(exported)}`,
  );
}

/** Imports the release's entry module (ESM or CommonJS) and makes a server of it. */
export async function loadApp(entry: string): Promise<LoadedApp> {
  const mod = (await import(pathToFileURL(entry).href)) as Record<string, unknown>;
  const exported = 'default' in mod ? mod.default : mod;
  // ESM: `export function close()`; CommonJS: `module.exports.close = ...` on the listener.
  const drain = namedHook<[object]>(mod, exported, 'drain');
  const close = namedHook<[]>(mod, exported, 'close');
  const server = await toServer(exported, entry, mod);
  return { server, drain, close };
}
