import type { Command } from 'commander';
import { collect } from '../options.js';

/** Registers `prefork fleet deploy <artifact> --inventory FILE`. */
export function registerFleet(program: Command): void {
  const fleet = program
    .command('fleet')
    .description('roll a release out across hosts with Ansible (docs/fleet.md)');
  fleet
    .command('deploy')
    .description(
      'install and deploy <artifact> on every host of the inventory: 1 host, then batches; the first failure halts and rolls back the hosts moved',
    )
    .argument('<artifact>', 'the release archive (.tar.gz) on this machine')
    .requiredOption('-i, --inventory <file>', 'Ansible inventory of the hosts')
    .option('--name <name>', 'release name on the hosts (default: the artifact name, no extension)')
    .option('--batch <n>', 'hosts per batch after the first one: a count or a share', '25%')
    .option('--hosts <pattern>', 'the inventory hosts to roll out to', 'all')
    .option(
      '--state-dir <dir>',
      'where each rollout records the hosts it moved and their outcomes',
      '.prefork-fleet',
    )
    .option(
      '-e, --extra-vars <vars>',
      'variables for the playbook, as ansible-playbook takes them (repeatable)',
      collect,
    )
    .option('--json', 'one JSON event per line instead of the task list')
    .addHelpText(
      'after',
      '\nExit codes: 0 every host runs the release; 1 halted and rolled back (every host serves its\nprevious release); 2 bad usage, nothing started; 3 a host could not be rolled back (read the message).',
    )
    .action(async (artifact: string, options: Record<string, unknown>) => {
      const { createReporter } = await import('../../report/reporter.js');
      const { fleetDeploy } = await import('../../fleet/deploy.js');
      const reporter = await createReporter('fleet', Boolean(options.json));
      await fleetDeploy({
        artifact,
        inventory: String(options.inventory),
        name: typeof options.name === 'string' ? options.name : undefined,
        batch: String(options.batch),
        hosts: String(options.hosts),
        stateDir: String(options.stateDir),
        extraVars: (options.extraVars as string[] | undefined) ?? [],
        reporter,
      });
    });
}
