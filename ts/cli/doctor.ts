// `am-radio doctor`: what a bug report needs about the install: the binary loaded, the backends and why one is
// unavailable, CUDA versions, BLAS and the CPU.
import * as fs from 'fs';
import * as os from 'os';

import { glibcRuntime, native, nativeBinary } from '../native';
import { UsageError, version } from './help';

const cudaVersion = (v: number) => `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;

// Features the kernels or a BLAS library could use, for the report; the addon itself is built for the baseline
// of its architecture and checks nothing here.
const CPU_FEATURES = ['sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_bf16', 'amx_tile', 'asimd', 'sve', 'bf16'];

function cpuReport(): string {
  const cpus = os.cpus();
  let flags: string[] = [];
  if (process.platform === 'linux') {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const line = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info);
    if (line) flags = line[1].split(/\s+/);
  }
  const have = CPU_FEATURES.filter((f) => flags.includes(f));
  return `${cpus[0]?.model ?? 'unknown model'}, ${cpus.length} logical cores; ` +
    (flags.length ? `features: ${have.length ? have.join(' ') : 'none of ' + CPU_FEATURES.join(' ')}` : 'features: not readable on this platform');
}

export function doctorCommand(args: string[]): void {
  if (args.length) throw new UsageError(`doctor takes no arguments, got ${args.join(' ')}`);
  const glibc = glibcRuntime();
  console.log(`am-radio ${version()} on Node ${process.version}, ${process.platform}-${process.arch}${glibc ? `, glibc ${glibc}` : ''}`);
  console.log(`CPU: ${cpuReport()}`);
  // Throws the loader's Error (every place tried) when no binary loads: the CLI prints it and exits 1.
  const b = nativeBinary();
  console.log(`binary: ${b.source}${b.package ? ` ${b.package}@${b.version}` : ''}: ${b.file}`);
  console.log('backends:');
  for (const x of native.backends()) {
    const state = x.available ? 'available' : x.compiled ? 'compiled, unavailable' : 'not compiled';
    console.log(`  ${x.name.padEnd(5)} ${state}${x.device ? `: ${x.device}` : ''}${x.reason ? `: ${x.reason}` : ''}`);
  }
  const v = native.cudaVersions();
  if (v.runtime === 0) console.log('CUDA: not built into this binary');
  else
    console.log(`CUDA: runtime ${cudaVersion(v.runtime)} (linked in), driver ${v.driver ? `supports CUDA ${cudaVersion(v.driver)}` : 'none found'}` +
      ` (needs ${cudaVersion(v.requiredDriver)} or newer)`);
  const blas = native.blasInfo();
  console.log(`cpu GEMM: built-in ${native.cpuGemmKernel()} kernel; host BLAS ${blas.loaded ? `${blas.library} found (used only after debug.useCpuBlas(true))` : `none${blas.error ? ` (${blas.error})` : ''}`}`);
}
