import type { Command } from 'commander';
import { controlRequest, controlSocketPath } from '../../control/client.js';
import { EXIT, PreforkError, UsageError } from '../../errors/index.js';
import { sendSignal } from '../../process/alive.js';
import { type StopStep, stopProcess } from '../../process/stop.js';
import { movesSince } from '../../protocol/moves.js';
import { describeClosedAtDeadline, describeDrained } from '../../report/connections.js';
import { takeExitReport } from '../../state/exit-report.js';
import { MASTER_QUIT_MARGIN_MS, MASTER_TERM_MS } from '../../wait/timeouts.js';
import { resolveMaster } from '../master-target.js';
import { addRootOptions } from '../options.js';

function signalCommand(
  program: Command,
  name: string,
  signal: NodeJS.Signals,
  description: string,
): void {
  const command = program.command(name).description(description);
  addRootOptions(command);
  command.action(async (options: Record<string, unknown>) => {
    const { master } = await resolveMaster(options);
    if (!sendSignal(master.pid, signal))
      throw new UsageError(`master ${master.pid} exited meanwhile: nothing was signalled`);
    process.stdout.write(`prefork: sent ${signal} to master ${master.pid}\n`);
  });
}

/** Registers `reload`, `reopen-logs`, `scale` and `stop`: signals for people who'd rather not `kill`. */
export function registerSignalCommands(program: Command): void {
  signalCommand(
    program,
    'reload',
    'SIGHUP',
    'HUP: reload config and current release, replacing workers safely',
  );
  signalCommand(
    program,
    'reopen-logs',
    'SIGUSR1',
    'USR1: reopen log files in the master and every worker',
  );

  const scale = program
    .command('scale')
    .description('set the number of workers (TTIN/TTOU): N, +N or -N')
    .argument('<n>', 'N, +N or -N');
  addRootOptions(scale);
  scale.action(async (amount: string, options: Record<string, unknown>) => {
    if (!/^[+-]?\d+$/.test(amount)) throw new UsageError(`scale "${amount}": expected N, +N or -N`);
    const { config, master } = await resolveMaster(options);
    const target = /^[+-]/.test(amount) ? master.desiredWorkers + Number(amount) : Number(amount);
    if (target < 1)
      throw new UsageError(`scale ${amount}: would leave ${target} workers; at least 1 is needed`);
    const result = await controlRequest(controlSocketPath(config.root, master.pid), {
      cmd: 'scale',
      workers: target,
    });
    process.stdout.write(`prefork: master ${master.pid} now runs ${result.workers} workers\n`);
  });

  const stop = program
    .command('stop')
    .description('QUIT: graceful shutdown (workers drain); --quick: TERM')
    .option('--quick', 'quick shutdown (TERM) instead of draining');
  addRootOptions(stop);
  stop.action(async (options: Record<string, unknown>) => {
    const { config, master } = await resolveMaster(options);
    // One signal, no escalation: a stop that takes too long is for a person to look at.
    const step: StopStep = options.quick
      ? { signal: 'SIGTERM', waitMs: MASTER_TERM_MS }
      : {
          signal: 'SIGQUIT',
          // Its workers drain by its own graceful timeout, whatever this command's setting says.
          waitMs: (master.gracefulTimeout ?? config.gracefulTimeout) * 1000 + MASTER_QUIT_MARGIN_MS,
        };
    if ((await stopProcess(master.pid, [step])) === undefined) {
      throw new PreforkError(
        `master ${master.pid} is still running ${step.waitMs / 1000} s after ${step.signal.slice(3)}: look at its log; "prefork stop --quick" stops it without draining`,
        EXIT.failed,
      );
    }
    // What it closed at a deadline during the stop: its total at the end, less the one before.
    const report = takeExitReport(config.root, master.pid);
    const closed = (report?.closedAtDeadline ?? 0) - master.closedAtDeadline;
    const note =
      report === undefined || closed <= 0
        ? ''
        : `: ${describeClosedAtDeadline(closed, report.gracefulTimeoutS)}`;
    // A stop has no next generation: its drains close connections, and say how.
    const drained =
      report?.drained === undefined
        ? ''
        : describeDrained(movesSince(report.drained, master.drained));
    process.stdout.write(
      `prefork: master ${master.pid} stopped${note}${drained === '' ? '' : ` (connections: ${drained})`}\n`,
    );
  });
}
