// `am-radio build`: the source build of the native addon, for platforms without a binary package. cmake-js and
// node-addon-api are not dependencies of am-radio (every install would carry them for the few that build): they are
// optional peer dependencies that this command asks for by name when they are missing.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { sourceBuildCommand } from '../native';
import { packageRoot } from '../package-root';
import { commandHelp, UsageError } from './help';

interface BuildOptions {
  ifMissing: boolean;
  env: Record<string, string>;
}

function parseBuildArgs(args: string[]): BuildOptions {
  // The emulator's self-tests are only for the repository's test/sim.test.ts, in an addon of their own
  // (am_radio_selftest.node, beside am_radio.node, which never contains them): not built unless asked for
  // (--self-tests, or AM_RADIO_SELFTEST in the environment, which is kept as given).
  const o: BuildOptions = { ifMissing: false, env: { AM_RADIO_SELFTEST: process.env.AM_RADIO_SELFTEST ?? '0' } };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--if-missing') o.ifMissing = true;
    else if (a === '--no-cuda') o.env.AM_RADIO_CUDA = '0';
    else if (a === '--no-sim') o.env.AM_RADIO_SIM = '0';
    else if (a === '--self-tests') o.env.AM_RADIO_SELFTEST = '1';
    else if (a === '--cuda-arch') {
      const v = args[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError('--cuda-arch needs a value, e.g. --cuda-arch 90-real');
      o.env.AM_RADIO_CUDA_ARCH = v;
    } else throw new UsageError(`build: unknown ${a.startsWith('-') ? 'option' : 'argument'} ${JSON.stringify(a)}\n${commandHelp('build')}`);
  }
  return o;
}

/** The installed tool's main script, found from the am-radio package as Node would (the consumer's node_modules). */
function toolScript(name: string, bin: string): string | null {
  let manifest: string;
  try {
    manifest = require.resolve(`${name}/package.json`, { paths: [packageRoot()] });
  } catch {
    return null;
  }
  const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { bin?: string | Record<string, string> };
  const rel = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.[bin];
  if (!rel) throw new Error(`${manifest} names no ${bin} executable`);
  return path.join(path.dirname(manifest), rel);
}

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, cmd)));
}

export function buildCommand(args: string[]): void {
  const o = parseBuildArgs(args);
  const root = packageRoot();
  const output = path.join(root, 'build', 'Release', 'am_radio.node');
  // With the self-tests asked for, a build without their addon is missing something too. CMake builds none in a
  // package without the test sources (test/native/, which npm does not ship), and none with neither sim nor cuda
  // (nvcc's presence is CMake's to find, so only a build with sim is sure to have one).
  const selftestOutput = path.join(root, 'build', 'Release', 'am_radio_selftest.node');
  const wanted = [output];
  if (o.env.AM_RADIO_SELFTEST !== '0' && o.env.AM_RADIO_SIM !== '0' && fs.existsSync(path.join(root, 'test', 'native', 'selftest.cu')))
    wanted.push(selftestOutput);
  if (o.ifMissing && wanted.every((f) => fs.existsSync(f))) {
    console.log(`am-radio build: ${wanted.join(' and ')} ${wanted.length > 1 ? 'exist' : 'exists'} (--if-missing); delete ${wanted.length > 1 ? 'them' : 'it'} or drop --if-missing to rebuild`);
    return;
  }
  const cmakeJs = toolScript('cmake-js', 'cmake-js');
  let addonApi = true;
  try {
    require.resolve('node-addon-api', { paths: [root] });
  } catch {
    addonApi = false;
  }
  const missing = [cmakeJs ? null : 'cmake-js', addonApi ? null : 'node-addon-api'].filter(Boolean);
  if (missing.length) throw new Error(`am-radio build: ${missing.join(' and ')} not installed; run:\n  ${sourceBuildCommand()}`);
  if (!onPath('cmake')) throw new Error('am-radio build: cmake is not on PATH; install CMake 3.18 or newer (Debian/Ubuntu: apt-get install cmake ninja-build g++)');
  const env = { ...process.env, ...o.env };
  const switches = Object.entries(o.env).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`am-radio build: building the native addon in ${root}${switches ? ` with ${switches}` : ''} (cmake-js; several minutes)`);
  // configure runs every time: the build switches are read by CMake at configure time, and a plain `compile`
  // reuses an earlier configuration, so a switch given now would silently not apply.
  for (const step of ['configure', 'build']) {
    const r = spawnSync(process.execPath, [cmakeJs!, step], { cwd: root, env, stdio: 'inherit' });
    if (r.error) throw new Error(`am-radio build: could not run cmake-js ${step}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`am-radio build: cmake-js ${step} failed (exit ${r.status ?? r.signal}); the compiler's output is above`);
  }
  for (const f of wanted) if (!fs.existsSync(f)) throw new Error(`am-radio build: cmake-js finished but ${f} was not written`);
  console.log(`am-radio build: wrote ${output}; it is loaded before any binary package (am-radio doctor shows which)`);
}
