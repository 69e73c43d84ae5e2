import http from 'node:http';
import WebSocket from 'ws';

/** What happened to one kind of long-lived client over a test. */
export interface Goodbyes {
  /** Close codes received (WebSocket), or 'retry' for an SSE stream that ended with a hint. */
  codes: Record<string, number>;
  /** When each goodbye arrived (`Date.now()`). */
  times: number[];
  /** Errors (resets, refused connections, a stream ended without a goodbye). */
  errors: string[];
}

/** A set of clients that stay connected, say which release they are on, and reconnect as told. */
export interface ClientSet {
  goodbyes: Goodbyes;
  /** How many clients are on each release now. */
  onRelease(): Record<string, number>;
  /** Messages sent and not yet answered (a chat client resends them after it reconnects). */
  unanswered(): number;
  /** Answers received. */
  answers(): number;
  stop(): void;
}

function newGoodbyes(): Goodbyes {
  return { codes: {}, times: [], errors: [] };
}

function noteGoodbye(goodbyes: Goodbyes, code: string): void {
  goodbyes.codes[code] = (goodbyes.codes[code] ?? 0) + 1;
  goodbyes.times.push(Date.now());
}

/**
 * `count` chat clients, as a browser app runs them: each says something every ~`everyMs` and
 * waits for the echo; on a close it reconnects at once and resends what was not answered.
 * Resolves once all are connected (in batches, so the listen backlog is not overrun).
 */
export async function startChatClients(
  url: string,
  count: number,
  everyMs = 1000,
): Promise<ClientSet> {
  const goodbyes = newGoodbyes();
  const releases = new Map<number, string>();
  let stopped = false;
  let answers = 0;
  const pending = new Map<number, Set<string>>();
  const timers: NodeJS.Timeout[] = [];

  const connect = (id: number): Promise<void> =>
    new Promise((resolve) => {
      const ws = new WebSocket(url);
      const queue = pending.get(id) ?? new Set<string>();
      pending.set(id, queue);
      let sent = 0;
      ws.on('message', (data) => {
        const message = JSON.parse(String(data)) as { hello?: string; echo?: string };
        if (message.hello !== undefined) {
          releases.set(id, message.hello);
          for (const text of queue) ws.send(text);
          resolve();
        } else if (message.echo !== undefined && queue.delete(message.echo)) {
          answers += 1;
        }
      });
      const timer = setInterval(
        () => {
          if (ws.readyState !== WebSocket.OPEN) return;
          const text = `${id}:${sent++}`;
          queue.add(text);
          ws.send(text);
        },
        everyMs * (0.75 + Math.random() / 2),
      );
      timers.push(timer);
      ws.on('error', (error) =>
        goodbyes.errors.push(`${new Date().toISOString()} ${error.message}`),
      );
      ws.on('close', (code) => {
        clearInterval(timer);
        releases.delete(id);
        if (stopped) return;
        noteGoodbye(goodbyes, String(code));
        resolve();
        void connect(id);
      });
      sockets.add(ws);
      ws.once('close', () => sockets.delete(ws));
    });
  const sockets = new Set<WebSocket>();
  for (let first = 0; first < count; first += 100) {
    const batch = [];
    for (let id = first; id < Math.min(count, first + 100); id += 1) batch.push(connect(id));
    await Promise.all(batch);
  }
  return {
    goodbyes,
    onRelease: () => countValues(releases),
    unanswered: () => [...pending.values()].reduce((sum, queue) => sum + queue.size, 0),
    answers: () => answers,
    stop() {
      stopped = true;
      for (const timer of timers) clearInterval(timer);
      for (const ws of sockets) ws.terminate();
    },
  };
}

/**
 * `count` server-sent-event clients on `url` (`GET /events`): each reads the first event
 * (`{ release }`), and when the stream ends with a `retry:` hint, reconnects after it.
 */
export async function startEventClients(url: string, count: number): Promise<ClientSet> {
  const goodbyes = newGoodbyes();
  const releases = new Map<number, string>();
  const requests = new Set<http.ClientRequest>();
  let stopped = false;
  const connect = (id: number): Promise<void> =>
    new Promise((resolve) => {
      const req = http.get(url, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
          const first = /^data: (.*)\n\n/.exec(text);
          if (first?.[1] !== undefined && !releases.has(id)) {
            releases.set(id, (JSON.parse(first[1]) as { release: string }).release);
            resolve();
          }
        });
        res.on('end', () => {
          releases.delete(id);
          requests.delete(req);
          if (stopped) return;
          const retry = /\nretry: (\d+)\n\n$/.exec(`\n${text}`);
          if (retry?.[1] === undefined) goodbyes.errors.push(`stream ${id} ended with no retry`);
          else noteGoodbye(goodbyes, 'retry');
          resolve();
          setTimeout(() => void connect(id), Number(retry?.[1] ?? 500));
        });
      });
      requests.add(req);
      req.on('error', (error) => {
        requests.delete(req);
        if (stopped) return;
        goodbyes.errors.push(`${new Date().toISOString()} ${error.message}`);
        resolve();
      });
    });
  await Promise.all(Array.from({ length: count }, (_, id) => connect(id)));
  return {
    goodbyes,
    onRelease: () => countValues(releases),
    unanswered: () => 0,
    answers: () => 0,
    stop() {
      stopped = true;
      for (const req of requests) req.destroy();
    },
  };
}

function countValues(map: Map<number, string>): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const value of map.values()) counts[value] = (counts[value] ?? 0) + 1;
  return counts;
}

/** The largest share of `times` that falls in any one `bucketMs` window (1: all at once). */
export function peakShare(times: number[], bucketMs: number): number {
  if (times.length === 0) return 0;
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  let from = 0;
  for (let to = 0; to < sorted.length; to += 1) {
    while ((sorted[to] as number) - (sorted[from] as number) >= bucketMs) from += 1;
    peak = Math.max(peak, to - from + 1);
  }
  return peak / sorted.length;
}
