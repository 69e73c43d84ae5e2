import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as v from 'valibot';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlProtocolError, controlRequest } from '../../src/control/client.js';
import { MasterStatusSchema } from '../../src/control/schema.js';

// The control socket's replies are validated: a master of another prefork answers in a shape
// this one reads (older fields mapped) or an error that says so, never a crash.

const dirs: string[] = [];
const servers: net.Server[] = [];

afterEach(() => {
  for (const server of servers.splice(0)) server.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A control socket that answers every request with `reply`, as a master of another prefork might. */
async function fakeMaster(reply: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-control-'));
  dirs.push(dir);
  const path = join(dir, 'master.sock');
  const server = net.createServer((socket) => {
    socket.once('data', () => socket.end(reply));
    socket.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return path;
}

/**
 * A status as the first masters answered it: `childPid` and `parentPid`, none of the later
 * fields.
 */
const FIRST_STATUS = {
  pid: 4242,
  root: '/srv/app',
  release: 'v1',
  version: '1.0.0',
  releaseDir: '/srv/app/releases/v1',
  state: 'running',
  desiredWorkers: 2,
  binds: ['127.0.0.1:8000'],
  childPid: 4343,
  parentPid: 4141,
  workers: [{ pid: 4300, release: 'v1', state: 'ready', requests: 3, rss: 1, age: 5 }],
};

describe('control replies', () => {
  it("reads a first master's status: childPid/parentPid as newMasterPid/oldMasterPid, missing fields as what they mean", async () => {
    const path = await fakeMaster(`${JSON.stringify({ ok: true, result: FIRST_STATUS })}\n`);
    const status = await controlRequest(path, { cmd: 'status' });
    expect(status).toMatchObject({
      newMasterPid: 4343,
      oldMasterPid: 4141,
      traffic: [],
      workersStopped: false,
      workerIdentity: null,
      metrics: null,
    });
    expect(status.workers[0]).toMatchObject({ kind: 'node', generation: 1, tls: false });
    expect(status).not.toHaveProperty('childPid');
    expect(status).not.toHaveProperty('parentPid');
  });

  it('a reply of a shape it does not read is a ControlProtocolError naming the master and the way out', async () => {
    const path = await fakeMaster(
      `${JSON.stringify({ ok: true, result: { ...FIRST_STATUS, workers: 'many' } })}\n`,
    );
    const failed = await controlRequest(path, { cmd: 'status' }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(ControlProtocolError);
    expect((failed as Error).message).toMatch(
      /the master at .*master\.sock answered "status" in a form this prefork .* \(control protocol \d+\) does not read \(workers: .*\).*kill -USR2 the master.*-WINCH and then -QUIT the old one/,
    );
    // Not JSON (a master exiting as it answered): no answer, not another version.
    const cut = await fakeMaster('{"ok":tr');
    const noAnswer = await controlRequest(cut, { cmd: 'status' }).catch((error: unknown) => error);
    expect(noAnswer).not.toBeInstanceOf(ControlProtocolError);
    expect((noAnswer as Error).message).toMatch(/no complete answer .*not one JSON line/);
  });

  it("passes a master's own error on as it said it", async () => {
    const path = await fakeMaster(
      `${JSON.stringify({ ok: false, error: 'upgrade refused: busy' })}\n`,
    );
    await expect(controlRequest(path, { cmd: 'upgrade', workers: 1 })).rejects.toThrow(
      /^upgrade refused: busy$/,
    );
  });

  it('today’s status parses as itself', () => {
    const parsed = v.parse(MasterStatusSchema, {
      ...FIRST_STATUS,
      childPid: undefined,
      newMasterPid: null,
    });
    expect(parsed.newMasterPid).toBeNull();
  });
});
