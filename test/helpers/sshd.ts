import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { track, waitFor } from './processes.js';

/** An sshd the test started on loopback addresses, with throwaway host and client keys. */
export interface Sshd {
  port: number;
  /** The client's private key, the only key it accepts. */
  clientKey: string;
  /** A known_hosts file naming its host key at every address. */
  knownHosts: string;
  /** Where Ansible keeps its persistent SSH connections (ANSIBLE_SSH_CONTROL_PATH_DIR). */
  controlDir: string;
  /** Ends the persistent client connections, then sshd. */
  stop(): Promise<void>;
}

/** A free TCP port on `host`, as the kernel picks it. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Starts Debian's sshd (`/usr/sbin/sshd -D -e`) listening on `addresses` (127.0.0.2...), for
 * the current user, key authentication only, with keys made in `dir`.
 */
export async function startSshd(dir: string, addresses: string[]): Promise<Sshd> {
  if (!existsSync('/usr/sbin/sshd')) {
    throw new Error(
      "no /usr/sbin/sshd: install Debian's openssh-server (.ci/run does, without starting it)",
    );
  }
  mkdirSync(dir, { recursive: true });
  const hostKey = join(dir, 'host_key');
  const clientKey = join(dir, 'client_key');
  for (const key of [hostKey, clientKey]) {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'prefork-test', '-f', key]);
  }
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  const hostPublic = readFileSync(`${hostKey}.pub`, 'utf8').trim();
  const port = await freePort(addresses[0] as string);
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, addresses.map((a) => `[${a}]:${port} ${hostPublic}\n`).join(''));
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      ...addresses.map((a) => `ListenAddress ${a}`),
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      // The keys live in a temporary directory, which StrictModes would refuse (/tmp is 1777).
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      `PidFile ${join(dir, 'sshd.pid')}`,
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  // As root, sshd needs its privilege-separation directory (the package's unit makes it).
  if (process.getuid?.() === 0) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const sshd: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  track(sshd.pid);
  let log = '';
  sshd.stderr?.on('data', (chunk) => {
    log += chunk;
  });
  let exited = false;
  sshd.on('exit', () => {
    exited = true;
  });
  for (const address of addresses) {
    await waitFor(`sshd to listen on ${address}:${port}`, async () => {
      if (exited) throw new Error(`sshd exited: ${log}`);
      return canConnect(address, port);
    });
  }
  const controlDir = join(dir, 'cp');
  mkdirSync(controlDir, { recursive: true });
  return {
    port,
    clientKey,
    knownHosts,
    controlDir,
    async stop() {
      for (const socket of readdirSync(controlDir)) {
        spawnSync('ssh', ['-o', `ControlPath=${join(controlDir, socket)}`, '-O', 'exit', 'x'], {
          stdio: 'ignore',
          timeout: 5000,
        });
      }
      if (!exited) {
        const gone = new Promise((resolve) => sshd.once('exit', resolve));
        sshd.kill('SIGTERM');
        await gone;
      }
    },
  };
}
