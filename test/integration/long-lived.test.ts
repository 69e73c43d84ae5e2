import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { installExample } from '../helpers/examples.js';
import { startLoad } from '../helpers/load.js';
import {
  type ClientSet,
  peakShare,
  startChatClients,
  startEventClients,
} from '../helpers/long-lived-clients.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';

/** WebSocket clients and event-stream clients kept open across every deploy. */
const CHATS = 1000;
const STREAMS = 100;
/** Long enough that a deploy which sits it out is told apart from one that does not. */
const GRACEFUL_TIMEOUT_S = 60;
const GOODBYE_WINDOW_S = 3;

const installed = mkdtempSync(join(tmpdir(), 'prefork-websocket-'));
let root: AppRoot | undefined;
const clientSets: ClientSet[] = [];

// The example's node_modules (ws) are installed here, by the test setup, from the npm registry.
beforeAll(async () => {
  await installExample('websocket', installed);
}, 300_000);

afterEach(() => {
  for (const set of clientSets.splice(0)) set.stop();
  killAll();
  root?.remove();
});

afterAll(() => rmSync(installed, { recursive: true, force: true }));

/** Deploys (or rolls back to) `release` and checks every long-lived client moved with a goodbye. */
async function moveTo(
  command: string[],
  release: string,
  chats: ClientSet,
  streams: ClientSet,
): Promise<number> {
  const before = { chat: chats.goodbyes.times.length, stream: streams.goodbyes.times.length };
  const started = Date.now();
  const result = await runPrefork([
    ...command,
    '--root',
    (root as AppRoot).dir,
    '--health-path',
    '/health',
    '--verify-window',
    '1',
  ]);
  const took = Date.now() - started;
  expect(result.code, result.stdout + result.stderr).toBe(0);
  // Sitting out the graceful timeout would take longer than it on its own.
  expect(took, result.stdout).toBeLessThan((GRACEFUL_TIMEOUT_S * 1000) / 2);
  track(readPid((root as AppRoot).path('prefork.pid')));
  await waitFor(
    `every client on ${release}`,
    () => chats.onRelease()[release] === CHATS && streams.onRelease()[release] === STREAMS,
    60_000,
  );
  await waitFor('every chat message answered', () => chats.unanswered() === 0, 30_000);
  const chatTimes = chats.goodbyes.times.slice(before.chat);
  const streamTimes = streams.goodbyes.times.slice(before.stream);
  // Every client was told goodbye, at least once (one that reconnected to an old worker
  // still serving, before WINCH, is told again).
  expect(chatTimes.length).toBeGreaterThanOrEqual(CHATS);
  expect(streamTimes.length).toBeGreaterThanOrEqual(STREAMS);
  // Spread over the window: all at once would put every goodbye in one 250 ms.
  const peak = peakShare(chatTimes, 250);
  expect(peak, `peak share of goodbyes in 250 ms: ${peak}`).toBeLessThan(0.2);
  const span = Math.max(...chatTimes) - Math.min(...chatTimes);
  expect(span).toBeGreaterThan(GOODBYE_WINDOW_S * 1000 * 0.6);
  return took;
}

describe('long-lived connections across a deploy (docs/examples/websocket)', () => {
  it(`${CHATS} WebSocket and ${STREAMS} SSE clients are told goodbye (1012, retry), spread over the window, and move to the new release, without waiting out the graceful timeout`, async () => {
    root = makeAppRoot();
    cpSync(installed, root.path('releases', 'ws-a'), { recursive: true });
    cpSync(installed, root.path('releases', 'ws-b'), { recursive: true });
    const master = await startMaster(root.dir, [
      'releases/ws-a',
      '--graceful-timeout',
      String(GRACEFUL_TIMEOUT_S),
      '--goodbye-window',
      String(GOODBYE_WINDOW_S),
    ]);
    const load = startLoad(master.url, { connections: 8, durationSec: 240 });
    const chats = await startChatClients(`ws://127.0.0.1:${master.port}/`, CHATS);
    clientSets.push(chats);
    const streams = await startEventClients(`http://127.0.0.1:${master.port}/events`, STREAMS);
    clientSets.push(streams);
    await waitFor('chat answers', () => chats.answers() > CHATS);

    const deployTook = await moveTo(['deploy', 'releases/ws-b'], 'ws-b', chats, streams);
    const rollbackTook = await moveTo(['rollback'], 'ws-a', chats, streams);

    // Every goodbye was said in the protocol: 1012 (service restart), never 1006 (cut).
    expect(Object.keys(chats.goodbyes.codes)).toEqual(['1012']);
    expect(chats.goodbyes.errors).toEqual([]);
    expect(streams.goodbyes.errors).toEqual([]);
    const http = await load.stop();
    expect(http.failed, JSON.stringify(http)).toBe(0);
    console.log(
      `deploy ${deployTook} ms, rollback ${rollbackTook} ms; ${chats.answers()} chat answers; goodbyes ${JSON.stringify(chats.goodbyes.codes)} + ${JSON.stringify(streams.goodbyes.codes)}`,
    );
  }, 300_000);
});
