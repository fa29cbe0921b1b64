// The CLI's commands, their usage and help text: the one list that --help, `help <command>` and the
// unknown-command message are made from.
import { packageJson } from '../package-root';

export interface CommandHelp {
  name: string;
  usage: string;
  summary: string;
  details: string[];
}

export const COMMANDS: CommandHelp[] = [
  {
    name: 'demo',
    usage: 'am-radio demo',
    summary: 'check every available backend and the embedded checkpoint against the reference (the default command)',
    details: [
      'Lists the backends, runs a tensor + autograd check on each (other backends against cpu), then the embedded',
      'tiny RADIO checkpoint on each against the reference implementation\'s outputs. Exits 1 when a check fails.',
    ],
  },
  {
    name: 'infer',
    usage: 'am-radio infer [checkpoint-dir] [image|folder...] [options]',
    summary: 'features and a PCA picture per image; without images, check a checkpoint (the embedded one by default)',
    details: [
      'checkpoint-dir       a folder with config.json and model.safetensors, a ViT RADIO or an E-RADIO (the first',
      '                     argument is taken as the checkpoint when it is a folder holding either), relative to the',
      '                     current directory;',
      '                     default: the checkpoint embedded in the package, wherever the command runs',
      'image|folder         JPEG, PNG or WebP files, or folders searched recursively for .jpg .jpeg .png .webp. For',
      '                     each image, writes <out>/<name>.safetensors (<head>.summary [1, C], <head>.features',
      '                     [1, N, C] for each head, and the resolution as metadata) and <out>/<name>.pca.png (the',
      '                     input beside the first three principal components of the features as RGB); a folder\'s',
      '                     images keep their sub-paths. Without images: runs the checkpoint folder\'s',
      '                     io.safetensors images (else random ones) and prints the shapes, the forward time and',
      '                     each head\'s error against the expected outputs stored there.',
      '--out DIR            where the outputs go (default: the current folder)',
      '--image-size S       N: the shorter side scaled to N, aspect kept; HxW: exactly H by W (multiples of the patch',
      '                     size, times the ViTDet window; of 32 for E-RADIO). Default: the image\'s own size, its',
      '                     longer side at most the position table (cpe_max_size), rounded to the nearest supported',
      '                     resolution',
      '--device D           cpu (default), sim or cuda',
      '--dtype T            f32 (default) or bf16',
      '--heads A,B          the heads written (backbone and the checkpoint\'s adaptor names); default all',
      '--pca-head H         the head whose features the PCA picture shows (default backbone)',
      '--batch N            without images only: the random batch\'s size (default 1)',
    ],
  },
  {
    name: 'distill',
    usage: 'am-radio distill config.json [--resume]',
    summary: 'train a student from one or more teachers (README, "Distillation (the trainer)")',
    details: [
      '--resume             continue from the newest checkpoint in the config\'s outDir',
      'mpirun -np N am-radio distill config.json: data parallel over N ranks (README, "Distributed (MPI)")',
    ],
  },
  {
    name: 'teach',
    usage: 'am-radio teach config.json | --teacher name=DIR --images DIR --out DIR [--size HxW] [--batch N] [--device D] [--dtype f32|bf16] [--shard-size N]',
    summary: 'precompute a teacher\'s targets as feature shards for distill',
    details: [],
  },
  {
    name: 'doctor',
    usage: 'am-radio doctor',
    summary: 'print the binary loaded, the backends, CUDA driver and runtime, BLAS and CPU features',
    details: ['Exits 1 when no native addon loads, after printing every place tried and why it failed.'],
  },
  {
    name: 'build',
    usage: 'am-radio build [--if-missing] [--no-cuda] [--no-sim] [--cuda-arch LIST] [--self-tests]',
    summary: 'build the native addon from source with cmake-js, for platforms without a binary package',
    details: [
      'Needs cmake-js and node-addon-api installed beside am-radio, a C++17 compiler, CMake and Ninja or Make;',
      'nvcc for the cuda backend. Writes build/Release/am_radio.node inside the am-radio package, which is then',
      'loaded before any binary package. CMAKE_BUILD_PARALLEL_LEVEL sets the number of compile jobs.',
      '--if-missing         do nothing when a local build already exists',
      '--no-cuda            leave the cuda backend out even when nvcc is found (AM_RADIO_CUDA=0)',
      '--no-sim             leave the sim backend (the CUDA emulator) out (AM_RADIO_SIM=0)',
      '--cuda-arch LIST     CMAKE_CUDA_ARCHITECTURES, e.g. 90-real (AM_RADIO_CUDA_ARCH)',
      '--self-tests         also build the test-only addon of the CUDA emulator\'s self-tests (the repository\'s tests need it)',
    ],
  },
  {
    name: 'help',
    usage: 'am-radio help [command]',
    summary: 'this text, or one command\'s',
    details: [],
  },
];

/** A mistake in what was typed (unknown command or option): the CLI exits 2 for these, 1 for failures. */
export class UsageError extends Error {}

export function version(): string {
  return packageJson().version;
}

export function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    `am-radio ${version()}: AM-RADIO vision backbones for Node.js`,
    '',
    'usage: am-radio [command] [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'options:',
    '  --help, -h      this text; after a command, that command\'s help (am-radio infer --help)',
    '  --version, -v   the package version',
    '',
  ].join('\n');
}

/** One command's usage line, for the errors a command gives about what was typed. */
export function usageOf(name: string): string {
  const c = COMMANDS.find((x) => x.name === name);
  if (!c) throw unknownCommand(name);
  return `usage: ${c.usage} (am-radio ${name} --help explains it)`;
}

export function commandHelp(name: string): string {
  const c = COMMANDS.find((x) => x.name === name);
  if (!c) throw unknownCommand(name);
  return [`usage: ${c.usage}`, '', c.summary, ...(c.details.length ? ['', ...c.details] : []), ''].join('\n');
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

/** An Error for a command that does not exist, naming the nearest one when a typo is likely. */
export function unknownCommand(name: string): UsageError {
  const near = COMMANDS.map((c) => ({ c: c.name, d: editDistance(name, c.name) })).sort((x, y) => x.d - y.d)[0];
  const hint = near && near.d <= 2 ? ` (did you mean ${near.c}?)` : '';
  return new UsageError(`unknown command ${JSON.stringify(name)}${hint}; commands: ${COMMANDS.map((c) => c.name).join(', ')}; am-radio --help explains them`);
}
