import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/processes.js';
import { REPO } from '../helpers/repo.js';

const dirs: string[] = [];
const started: ChildProcess[] = [];

afterEach(() => {
  for (const child of started.splice(0)) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('onChannelClosed', () => {
  it('tells a child its parent died while a handle it sent awaited the acknowledgement (Node emits no disconnect then)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'prefork-channel-'));
    dirs.push(dir);
    // The parent only forks; the child stops it, sends it a socket (whose ACK never comes),
    // then kills it, as a master SIGKILLed while its worker offers it a connection.
    writeFileSync(
      join(dir, 'parent.mjs'),
      `import { fork } from 'node:child_process';
fork(${JSON.stringify(join(dir, 'child.mjs'))}, [], { stdio: 'inherit' }).on('message', () => {});
`,
    );
    writeFileSync(
      join(dir, 'child.mjs'),
      `import net from 'node:net';
import { onChannelClosed } from ${JSON.stringify(join(REPO, 'dist/process/channel-closed.js'))};
setTimeout(() => process.exit(1), 10_000).unref();
onChannelClosed(process, () => {
  console.log('closed ' + process.pid);
  process.exit(0);
});
const server = net.createServer().listen(0, '127.0.0.1', () => {
  const socket = net.connect(server.address().port, '127.0.0.1', () => {
    process.kill(process.ppid, 'SIGSTOP');
    process.send('offer', socket);
    process.send('queued behind it', socket);
    process.kill(process.ppid, 'SIGKILL');
    console.log('parent killed');
  });
});
`,
    );
    const parent = spawn(process.execPath, [join(dir, 'parent.mjs')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    started.push(parent);
    let out = '';
    parent.stdout?.on('data', (chunk) => {
      out += chunk;
    });
    await waitFor('the parent killed', () => out.includes('parent killed'), 10_000);
    const killedAt = Date.now();
    await waitFor('the child told', () => /closed \d+/.test(out), 5_000);
    // Looked at every 50 ms.
    expect(Date.now() - killedAt).toBeLessThan(2_000);
  });
});
