// The command line as a user meets it, run from the built dist/ in child processes: help for every command,
// --version, mistakes answered with exit status 2, doctor, the embedded checkpoint found from any directory, and a
// demo that fails when a parity check does.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { embeddedCheckpoint, RadioModel, SafetensorsFile, writeSafetensors } from '../ts/index';

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'cli.js');
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;
const COMMANDS = ['demo', 'infer', 'distill', 'teach', 'doctor', 'build', 'help'];

beforeAll(() => {
  if (!fs.existsSync(cli)) throw new Error(`${cli} is missing: npm test builds it (pretest); run npm run build:ts`);
});

function am(args: string[], opts: { cwd?: string; env?: Record<string, string>; script?: string } = {}) {
  const r = spawnSync(process.execPath, [opts.script ?? cli, ...args], { encoding: 'utf8', cwd: opts.cwd ?? root, env: { ...process.env, ...opts.env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// Points the loader at nothing: what needs no addon must work without one.
const NO_ADDON = { AM_RADIO_NATIVE: path.join(os.tmpdir(), 'am-radio-no-such-addon.node') };

describe('am-radio CLI', () => {
  test('--help lists every command and works with no addon; `<command> --help` and `help <command>` give its usage', () => {
    for (const flag of ['--help', '-h', 'help']) {
      const r = am([flag], { env: NO_ADDON });
      expect(r.status).toBe(0);
      for (const c of COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ${c} +\\S`, 'm'));
      expect(r.stdout).toContain('--version');
    }
    for (const c of COMMANDS) {
      for (const args of [[c, '--help'], ['help', c]]) {
        const r = am(args, { env: NO_ADDON });
        expect({ args, status: r.status }).toEqual({ args, status: 0 });
        expect(r.stdout).toMatch(new RegExp(`^usage: am-radio ${c}\\b`));
      }
    }
    const inferHelp = am(['infer', '--help'], { env: NO_ADDON }).stdout;
    for (const option of ['--out DIR', '--image-size S', '--device D', '--dtype T', '--heads A,B', '--pca-head H', '--batch N'])
      expect(inferHelp).toMatch(new RegExp(`^${option} +\\S`, 'm'));  // each option on a line of its own, then its text
  });

  test('--version prints the package version', () => {
    for (const flag of ['--version', '-v']) expect(am([flag], { env: NO_ADDON })).toMatchObject({ status: 0, stdout: `${version}\n` });
  });

  test('an unknown command or option exits 2 and says what to do', () => {
    const typo = am(['infre'], { env: NO_ADDON });
    expect(typo.status).toBe(2);
    expect(typo.stderr).toContain('unknown command "infre" (did you mean infer?)');
    expect(typo.stderr).toContain('am-radio --help');
    const far = am(['frobnicate'], { env: NO_ADDON });
    expect(far.status).toBe(2);
    expect(far.stderr).not.toContain('did you mean');
    const opt = am(['--frob'], { env: NO_ADDON });
    expect(opt.status).toBe(2);
    expect(opt.stderr).toContain('unknown option --frob');
    const buildOpt = am(['build', '--fast'], { env: NO_ADDON });
    expect(buildOpt.status).toBe(2);
    expect(buildOpt.stderr).toContain('build: unknown option "--fast"');
    expect(am(['help', 'nope'], { env: NO_ADDON }).status).toBe(2);
  });

  test('doctor prints the binary, backends, CUDA, the cpu GEMM and CPU; without a binary, every place tried and exit 1', () => {
    const r = am(['doctor']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(`am-radio ${version} on Node ${process.version}`);
    expect(r.stdout).toContain(`binary: local build: ${path.join(root, 'build', 'Release', 'am_radio.node')}`);
    for (const b of ['cpu', 'cuda', 'sim']) expect(r.stdout).toMatch(new RegExp(`^  ${b} +(available|compiled, unavailable|not compiled)`, 'm'));
    expect(r.stdout).toMatch(/^CUDA: (runtime \d+\.\d+ \(linked in\), driver .*needs \d+\.\d+ or newer\)|not built into this binary)$/m);
    expect(r.stdout).toMatch(/^cpu GEMM: built-in (avx512|avx2|generic) kernel; host BLAS /m);
    expect(r.stdout).toMatch(/^CPU: .*logical cores; features: /m);
    const none = am(['doctor'], { env: NO_ADDON });
    expect(none.status).toBe(1);
    expect(none.stderr).toContain(`1. AM_RADIO_NATIVE=${NO_ADDON.AM_RADIO_NATIVE}: no such file`);
    expect(none.stderr).toContain('npx am-radio build');
  });

  test('the cuda backend says which of driver, driver version or GPU is missing', () => {
    const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(path.join(root, 'dist', 'index.js'))}).backends()))`], { encoding: 'utf8' });
    const cuda = (JSON.parse(r.stdout) as Array<{ name: string; compiled: boolean; available: boolean; reason?: string }>).find((b) => b.name === 'cuda')!;
    if (!cuda.compiled) {
      expect(cuda.reason).toBe('the addon was built without CUDA (nvcc was not found at build time)');
      return;
    }
    const driver = spawnSync('sh', ['-c', 'ldconfig -p | grep -q "libcuda\\.so\\.1 "']).status === 0;
    if (!driver) expect(cuda.reason).toMatch(/^no NVIDIA driver: libcuda\.so\.1 could not be loaded; the cuda backend needs CUDA 13\.0 \(NVIDIA driver R580 or newer\)$/);
    else if (!cuda.available) expect(cuda.reason).toMatch(/^(no GPU: |NVIDIA driver too old for this CUDA runtime|GPU .* has compute capability)/);
    else expect(cuda.reason).toBeUndefined();
  });

  test('embeddedCheckpoint() is the package\'s folder, and `am-radio infer` finds it from any directory', async () => {
    const dir = embeddedCheckpoint();
    expect(dir).toBe(path.join(root, 'test', 'fixtures', 'radio', 'vit-b16-v2heads'));
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-cwd-'));
    try {
      const r = am(['infer'], { cwd: elsewhere });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`loaded ${dir}: vit_base_patch16_224`);
      expect(r.stdout).toMatch(/backbone +summary \[2, 128\] +features \[2, 96, 64\] +summary rel\. error/);
      const js = spawnSync(process.execPath, ['-e', `console.log(require(${JSON.stringify(path.join(root, 'dist', 'index.js'))}).embeddedCheckpoint())`], { encoding: 'utf8', cwd: elsewhere });
      expect(js.stdout.trim()).toBe(dir);
    } finally {
      fs.rmSync(elsewhere, { recursive: true, force: true });
    }
    const model = await RadioModel.load(dir);
    try {
      expect([model.preferredResolution, model.patchSize, model.minResolutionStep]).toEqual([[128, 192], 16, 16]);
    } finally {
      model.dispose();
    }
  });

  test('the demo passes on this build, and exits 1 naming the head when a parity check fails', async () => {
    const ok = am(['demo']);
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toContain('demo: every check passed');
    // A copy of the package whose embedded checkpoint expects a different clip summary.
    const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-demo-'));
    try {
      fs.cpSync(path.join(root, 'dist'), path.join(pkg, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
      const fixture = path.join(pkg, 'test', 'fixtures', 'radio', 'vit-b16-v2heads');
      fs.cpSync(embeddedCheckpoint(), fixture, { recursive: true });
      const io = await SafetensorsFile.open(path.join(embeddedCheckpoint(), 'io.safetensors'));
      const entries: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
      try {
        for (const key of io.keys()) {
          const t = await io.readFloat(key);
          entries[key] = { dtype: 'F32', shape: t.shape, data: Float32Array.from(t.data) };
        }
      } finally {
        await io.close();
      }
      entries['clip.summary'].data[0] += 1;
      await writeSafetensors(path.join(fixture, 'io.safetensors'), entries);
      const bad = am(['demo'], { script: path.join(pkg, 'dist', 'cli.js'), env: { AM_RADIO_NATIVE: path.join(root, 'build', 'Release', 'am_radio.node') } });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(/^demo: \d+ check\(s\) failed:\n {2}cpu clip\.summary: relative error \S+ > 0\.0001/);
      expect(bad.stdout).toContain('FAILED');
    } finally {
      fs.rmSync(pkg, { recursive: true, force: true });
    }
  });
});
