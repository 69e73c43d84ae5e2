/**
 * A swarm of mostly idle kept-alive HTTP/1.1 clients, as an upstream pool or mobile apps keep
 * them: each sends a request, waits 0..`maxWaitMs` at random, and again, on its own kept-alive
 * connection (an agent of one socket), opening a new one only when that one closed. Run as a
 * child process (`fork`, IPC) so thousands of clients do not share the test's event loop.
 *
 * argv: url, count, maxWaitMs[, ca file]. Messages in: 'report', 'stop', {@link LatencyAsk}.
 * Messages out: {@link SwarmReport} (after 'stop': the final one, then it exits), and
 * {@link Latency} for each {@link LatencyAsk}.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';

/** What the swarm saw so far. */
export interface SwarmReport {
  type: 'report';
  /** Clients started (they start in batches) and connections opened. */
  started: number;
  opened: number;
  requests: number;
  failed: number;
  /** The first failures, as messages. */
  failures: string[];
  byRelease: Record<string, number>;
  /** Connections that answered for more than one release (moved without a reconnect). */
  carriedOver: number;
  inFlight: number;
  /**
   * The longest a client's connection sat between an answer and the next request, in ms: the
   * swarm's own lag on top of its wait. Past the server's keep-alive timeout (Node's 5 s) the
   * server closes the connection itself, and a request sent then may be reset: a lag of the
   * clients, not of a drain. `late` counts the requests sent after 4.5 s.
   */
  maxGapMs: number;
  late: number;
}

/** Asks for the latency of the requests sent in `[from, to]` (`Date.now()` ms). */
export interface LatencyAsk {
  type: 'latency';
  from: number;
  to: number;
}

/** Answered requests sent in a window: how many, and their time to the whole answer. */
export interface Latency {
  type: 'latency';
  count: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const [url = '', countArg = '0', waitArg = '3000', caFile] = process.argv.slice(2);
const count = Number(countArg);
const maxWaitMs = Number(waitArg);
const target = new URL(url);
const secure = target.protocol === 'https:';
const ca = caFile === undefined ? undefined : readFileSync(caFile);
const client = secure ? https : http;

let started = 0;
let opened = 0;
let requests = 0;
let failed = 0;
let inFlight = 0;
let carriedOver = 0;
let stopping = false;
let maxGapMs = 0;
let late = 0;
/** A gap this long nears the server's keep-alive timeout (5 s). */
const LATE_MS = 4500;
const failures: string[] = [];
const byRelease: Record<string, number> = {};
/** Each answered request: when it was sent (`Date.now()`) and how long its answer took (ms). */
const sentAt: number[] = [];
const tookMs: number[] = [];
const releasesOf = new WeakMap<net.Socket, Set<string>>();
const agents: http.Agent[] = [];

/** A client's own agent: one kept-alive connection, counted each time it opens one. */
function newAgent(): http.Agent {
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: 1, ca })
    : new http.Agent({ keepAlive: true, maxSockets: 1 });
  const create = agent.createConnection.bind(agent) as (...args: unknown[]) => net.Socket;
  (agent as unknown as { createConnection: typeof create }).createConnection = (...args) => {
    opened += 1;
    return create(...args);
  };
  agents.push(agent);
  return agent;
}

function failWith(message: string): void {
  failed += 1;
  if (failures.length < 20) failures.push(message);
}

/** One request on `agent`'s connection, `gapMs` after its previous answer (0: the first). */
function request(agent: http.Agent, gapMs: number): Promise<void> {
  const fail = (message: string) =>
    failWith(gapMs > 0 ? `${message} (sent ${gapMs} ms after the previous answer)` : message);
  inFlight += 1;
  const sent = Date.now();
  const start = performance.now();
  return new Promise((resolve) => {
    const done = () => {
      inFlight -= 1;
      resolve();
    };
    const req = client.get(url, { agent }, (res) => {
      const socket = res.socket;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) fail(`status ${res.statusCode}`);
        else {
          requests += 1;
          sentAt.push(sent);
          tookMs.push(performance.now() - start);
          let release = '?';
          try {
            release = String((JSON.parse(body) as { release?: unknown }).release);
          } catch {
            fail(`unreadable body ${body.slice(0, 80)}`);
          }
          byRelease[release] = (byRelease[release] ?? 0) + 1;
          const seen = releasesOf.get(socket) ?? new Set<string>();
          if (!seen.has(release) && seen.size === 1) carriedOver += 1;
          seen.add(release);
          releasesOf.set(socket, seen);
        }
        done();
      });
      res.on('error', (error) => {
        fail(`response: ${error.message}`);
        done();
      });
    });
    req.setTimeout(30_000, () => req.destroy(new Error('no answer in 30 s')));
    req.on('error', (error: NodeJS.ErrnoException) => {
      fail(`${error.code ?? ''} ${error.message}`);
      done();
    });
  });
}

async function run(): Promise<void> {
  const agent = newAgent();
  let gapMs = 0;
  while (!stopping) {
    await request(agent, gapMs);
    if (stopping) return;
    const answeredAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, Math.random() * maxWaitMs));
    gapMs = Date.now() - answeredAt;
    if (gapMs > maxGapMs) maxGapMs = gapMs;
    if (gapMs >= LATE_MS) late += 1;
  }
}

function report(): SwarmReport {
  return {
    type: 'report',
    started,
    opened,
    requests,
    failed,
    failures,
    byRelease,
    carriedOver,
    inFlight,
    maxGapMs,
    late,
  };
}

const loops: Promise<void>[] = [];
// Start in batches, so the connections do not overrun the listen backlog all at once.
const BATCH = 250;
const starter = setInterval(() => {
  for (let i = 0; i < BATCH && started < count && !stopping; i += 1) {
    started += 1;
    loops.push(run());
  }
  if (started >= count || stopping) clearInterval(starter);
}, 20);

function latency({ from, to }: LatencyAsk): Latency {
  const took = tookMs.filter(
    (_, i) => (sentAt[i] as number) >= from && (sentAt[i] as number) <= to,
  );
  took.sort((a, b) => a - b);
  const at = (q: number) => took[Math.min(took.length - 1, Math.floor(q * took.length))] ?? 0;
  return { type: 'latency', count: took.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: at(1) };
}

process.on('message', (message: unknown) => {
  if (message === 'report') process.send?.(report());
  if ((message as Partial<LatencyAsk>)?.type === 'latency') {
    process.send?.(latency(message as LatencyAsk));
  }
  if (message !== 'stop' || stopping) return;
  stopping = true;
  void Promise.all(loops).then(() => {
    process.send?.(report(), () => {
      for (const agent of agents) agent.destroy();
      process.exit(0);
    });
  });
});
process.on('disconnect', () => process.exit(0));
