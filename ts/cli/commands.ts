// The commands that need no model code (help, version, doctor, build) and the checks on what was typed; ts/cli.ts
// calls this first and runs the model commands itself when it returns false.
import { buildCommand } from './build';
import { doctorCommand } from './doctor';
import { COMMANDS, commandHelp, mainHelp, unknownCommand, UsageError, version } from './help';

const HELP = new Set(['--help', '-h']);
const VERSION = new Set(['--version', '-v']);

/** Handles argv when it is not for one of the model commands; true when done. Throws on unknown commands. */
export async function handleCommand(argv: string[]): Promise<boolean> {
  const [first, ...rest] = argv;
  if (first === undefined) return false; // bare `am-radio` runs the demo
  if (HELP.has(first)) {
    process.stdout.write(mainHelp());
    return true;
  }
  if (VERSION.has(first)) {
    console.log(version());
    return true;
  }
  if (first.startsWith('-')) throw new UsageError(`unknown option ${first}; am-radio --help lists the commands and options`);
  if (!COMMANDS.some((c) => c.name === first)) throw unknownCommand(first);
  if (rest.some((a) => HELP.has(a))) {
    process.stdout.write(commandHelp(first));
    return true;
  }
  if (first === 'help') {
    if (rest.length > 1) throw new UsageError(`help takes at most one command, got ${rest.join(' ')}`);
    process.stdout.write(rest.length ? commandHelp(rest[0]) : mainHelp());
    return true;
  }
  if (first === 'doctor') {
    doctorCommand(rest);
    return true;
  }
  if (first === 'build') {
    buildCommand(rest);
    return true;
  }
  if (first === 'demo' && rest.length) throw new UsageError(`demo takes no arguments, got ${rest.join(' ')}\n${commandHelp('demo')}`);
  return false;
}
