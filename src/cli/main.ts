/**
 * `prefork <command>`: the command line. Each command lives in `commands/`; errors meant for
 * the user are printed as one line and end the process with their exit code (docs/deploy.md, "Exit codes").
 */
import { Command, CommanderError } from 'commander';
import { EXIT, messageOf, PreforkError } from '../errors/index.js';
import { Handover } from '../handover/handover.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { registerDeploy } from './commands/deploy.js';
import { registerFleet } from './commands/fleet.js';
import { registerInstall } from './commands/install.js';
import { registerReleases } from './commands/releases.js';
import { registerSignalCommands } from './commands/signals.js';
import { registerStart } from './commands/start.js';
import { registerStatus } from './commands/status.js';
import { registerTop } from './commands/top.js';

const program = new Command('prefork')
  .description('zero-downtime prefork master and release upgrades for Node.js services')
  .version(PREFORK_VERSION)
  // A command's options are its own, also in `releases prune` (both take --root).
  .enablePositionalOptions()
  .configureOutput({
    outputError: (text, write) => write(`prefork: ${text.replace(/^error: /, '')}`),
  })
  .exitOverride();

registerStart(program);
registerDeploy(program);
registerStatus(program);
registerTop(program);
registerReleases(program);
registerInstall(program);
registerFleet(program);
registerSignalCommands(program);
const overrideExits = (parent: Command) => {
  for (const command of parent.commands) {
    command.exitOverride().configureOutput({
      outputError: (text, write) => write(`prefork: ${text.replace(/^error: /, '')}`),
    });
    overrideExits(command);
  }
};
overrideExits(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError && error.exitCode === 0) process.exit(0);
  // A master started by USR2 or --daemon tells whoever waits for it why it will never be ready
  // (a no-op in any other process: it was handed no ready pipe).
  Handover.take().reportFailure(messageOf(error));
  if (error instanceof CommanderError) process.exit(EXIT.usage);
  if (error instanceof PreforkError) {
    process.stderr.write(`prefork: ${error.message}\n`);
    process.exit(error.exitCode);
  }
  process.stderr.write(
    `prefork: unexpected error (a bug, please report it): ${(error as Error)?.stack ?? String(error)}\n`,
  );
  process.exit(EXIT.internal);
}
