import { relative } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config/load.js';
import { checkNode } from '../../process/node-binary.js';
import { addRootOptions, configSources } from '../options.js';

/** Registers `prefork install <archive | dir> [--name NAME]`. */
export function registerInstall(program: Command): void {
  const command = program
    .command('install')
    .description(
      'put a release into releases/<name> atomically: unpack (or copy) beside it, check it as deploy would, rename',
    )
    .argument('<source>', 'a release archive (.tar.gz, .tgz, .tar) or a release directory')
    .option('--name <name>', 'release name (default: the archive or directory name, no extension)')
    .option('--json', 'one JSON event per line instead of the task list')
    .addHelpText(
      'after',
      '\nExit codes: 0 installed; 2 bad archive or release, an entry leading outside the release,\nor the name exists (nothing was written).',
    );
  addRootOptions(command);
  command.action(async (source: string, options: Record<string, unknown>) => {
    const config = loadConfig(configSources(options));
    const { createReporter } = await import('../../report/reporter.js');
    const { installRelease } = await import('../../release/install.js');
    const reporter = await createReporter('install', Boolean(options.json));
    const started = Date.now();
    const installed = await installRelease({
      root: config.root,
      source,
      name: typeof options.name === 'string' ? options.name : undefined,
      nodeVersion: config.node === undefined ? process.version : checkNode(config.node),
      reporter,
    });
    reporter.info(
      `installed ${installed.name} (${installed.version}) in ${relative(process.cwd(), installed.dir) || installed.dir}`,
      { event: 'installed', ...installed, ms: Date.now() - started },
    );
  });
}
