import { basename } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config/load.js';
import type { Config } from '../../config/schema.js';
import { UsageError } from '../../errors/index.js';
import { readCurrentTarget } from '../../release/current-link.js';
import { addCanaryOptions, addDeployOptions, addRootOptions, configSources } from '../options.js';

function configOf(options: Record<string, unknown>): Config {
  return loadConfig(configSources(options));
}

/** Registers `prefork deploy <release>`, `prefork upgrade` and `prefork rollback`. */
export function registerDeploy(program: Command): void {
  const deployCommand = program
    .command('deploy')
    .description(
      'upgrade the running master to <release>: USR2, verify, WINCH old, QUIT old; roll back on failure',
    )
    .argument('<release>', 'release directory in releases/ (./releases/v2, releases/v2 or v2)')
    .addHelpText(
      'after',
      '\nExit codes: 0 deployed; 1 failed and rolled back (the previous release serves);\n2 bad usage, config or release (nothing changed); 3 rollback incomplete (read the message);\n4 another deploy holds the lock.',
    );
  addRootOptions(deployCommand);
  addDeployOptions(deployCommand);
  addCanaryOptions(deployCommand);
  deployCommand.action(async (release: string, options: Record<string, unknown>) => {
    const config = configOf(options);
    // Loaded on use: a master (the `start` command) never carries the orchestrator's code.
    const { createReporter } = await import('../../report/reporter.js');
    const { deploy } = await import('../../deploy/deploy.js');
    const reporter = await createReporter('deploy', Boolean(options.json));
    await deploy({ config, release, reporter, kind: 'deploy', canary: options.canary === true });
  });

  const upgradeCommand = program
    .command('upgrade')
    .description(
      'replace the running master by a new one on the same release, running the prefork (and Node) installed now: USR2, verify, WINCH old, QUIT old; current untouched; roll back on failure',
    )
    .addHelpText(
      'after',
      '\nExit codes as deploy: 0 upgraded; 1 failed and rolled back (the old master serves);\n2 bad usage, config or release (nothing changed); 3 rollback incomplete; 4 another deploy holds the lock.',
    );
  addRootOptions(upgradeCommand);
  addDeployOptions(upgradeCommand);
  upgradeCommand.action(async (options: Record<string, unknown>) => {
    const config = configOf(options);
    const current = readCurrentTarget(config.root);
    if (current === undefined) {
      throw new UsageError(
        `${config.root}/current points at no release: nothing runs to upgrade (start one with "prefork start <release>")`,
      );
    }
    const { createReporter } = await import('../../report/reporter.js');
    const { deploy } = await import('../../deploy/deploy.js');
    const reporter = await createReporter('upgrade', Boolean(options.json));
    await deploy({ config, release: basename(current), reporter, kind: 'upgrade' });
  });

  const rollbackCommand = program
    .command('rollback')
    .description('undo an upgrade in flight, or redeploy the previous release from the history');
  addRootOptions(rollbackCommand);
  addDeployOptions(rollbackCommand);
  rollbackCommand.action(async (options: Record<string, unknown>) => {
    const config = configOf(options);
    const { createReporter } = await import('../../report/reporter.js');
    const { rollback } = await import('../../deploy/rollback.js');
    const reporter = await createReporter('rollback', Boolean(options.json));
    await rollback(config, reporter);
  });
}
