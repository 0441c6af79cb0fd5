// `fedsynth`: the one command line in front of the data tools, the site agent and (later) the coordinator.
import { Command, CommanderError } from 'commander';
import { registerInspectCommand } from './commands/inspect.command.js';
import { registerPhantomCommand } from './commands/phantom.command.js';
import { registerSlicesCommand } from './commands/slices.command.js';
import { registerDemoCommand } from './commands/demo.command.js';
import { registerCoordinatorCommand } from './commands/coordinator.command.js';
import { registerAdminCommand } from './commands/admin.command.js';
import { registerSegmenterCommands } from './commands/segmenter.commands.js';
import { registerDoctorCommand } from './commands/doctor.command.js';
import { registerGeneratorCommands } from './commands/generator.commands.js';
import { registerSiteCommand } from './commands/site.command.js';
import { registerAuditCommand } from './commands/audit.command.js';
import { UsageError } from './cli-errors.js';

export function buildProgram(): Command {
  const program = new Command('fedsynth')
    .description('Federated synthetic brain-tumour MRI: data tools, site agent and coordinator.')
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: false })
    // Before any subcommand exists: commander copies this setting into subcommands only when they are created,
    // so every usage error (missing option, unknown flag) reaches main() and exits with code 2.
    .exitOverride();
  registerPhantomCommand(program);
  registerInspectCommand(program);
  registerSlicesCommand(program);
  registerSegmenterCommands(program);
  registerGeneratorCommands(program);
  registerDemoCommand(program);
  registerDoctorCommand(program);
  registerCoordinatorCommand(program);
  registerAdminCommand(program);
  registerSiteCommand(program);
  registerAuditCommand(program);
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : 2;
      return;
    }
    if (error instanceof UsageError) {
      console.error(`fedsynth: ${error.message}`);
      process.exitCode = 2;
      return;
    }
    console.error(`fedsynth: ${(error as Error).message ?? String(error)}`);
    if (process.env.FEDSYNTH_DEBUG) console.error(error);
    process.exitCode = 1;
  }
}

await main(process.argv);
