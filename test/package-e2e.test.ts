// The package as a user gets it, end to end: `npm pack` from a copy of the repository with no native build, the
// platform package made from this build, both installed into an empty project with --strict-allow-scripts (which
// refuses any install script), the README's consumer lines run exactly as written, the CLI run through npx; then the
// source build in a project without the platform package. Slow (minutes) and it installs the package's own
// dependencies from the npm registry, so it runs only with AM_RADIO_PACKAGING_E2E=1 (.ci/run sets it); otherwise it
// is reported skipped, with the reason in its title.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const platformName = `@am-radio/${process.platform}-${process.arch}`;
const ENABLED = process.env.AM_RADIO_PACKAGING_E2E === '1';
const title = ENABLED ? 'packaging end to end' : 'packaging end to end (skipped: set AM_RADIO_PACKAGING_E2E=1 to run it; .ci/run does)';

// Kept between runs so that the registry is asked once for sharp and cmake-js, not on every run.
const npmCache = path.join(os.tmpdir(), 'am-radio-e2e-npm-cache');

function sh(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  // The npm that runs jest exports its own configuration as npm_* variables; the child npm must not inherit it.
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'AM_RADIO_NATIVE')) as Record<string, string>;
  const r = spawnSync(cmd, args, {
    cwd, encoding: 'utf8', maxBuffer: 256 << 20,
    env: { ...clean, npm_config_cache: npmCache, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...env },
  });
  const out = { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', all: `${r.stdout ?? ''}${r.stderr ?? ''}` };
  if (r.error) throw r.error;
  return out;
}

function ok(r: ReturnType<typeof sh>, what: string): ReturnType<typeof sh> {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.all.slice(-6000)}`);
  return r;
}

/** The README's consumer view: the `npm install` line and the code block after it, exactly as written. */
function readmeConsumer(): { install: string; code: string; expected: string } {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /### In your project\n[\s\S]*?```sh\n(.*)\n```\n[\s\S]*?```js\n([\s\S]*?)```/.exec(readme);
  if (!m) throw new Error('README.md has no "### In your project" section with a ```sh install line and a ```js block');
  const expected = /console\.log\(.*\); \/\/ (.*)$/m.exec(m[2]);
  if (!expected) throw new Error('the README\'s consumer code block must end its console.log line with the output as a // comment');
  return { install: m[1], code: m[2], expected: expected[1] };
}

(ENABLED ? describe : describe.skip)(title, () => {
  let tmp: string;
  let mainTgz: string;
  let platformTgz: string;
  jest.setTimeout(45 * 60 * 1000);

  beforeAll(() => {
    const addon = path.join(root, 'build', 'Release', 'am_radio.node');
    if (!fs.existsSync(addon)) throw new Error(`${addon} is missing: npm test builds it (pretest); run npm run build`);
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-e2e-'));
  });
  afterAll(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('npm pack works from a clean copy of the repository, with no native build, and ships no install script', () => {
    // What a clean clone holds: the tracked files and the new ones git does not ignore (no build/, no dist/).
    const src = path.join(tmp, 'src');
    const files = ok(sh('git', ['ls-files', '-z', '-co', '--exclude-standard'], root), 'git ls-files').stdout.split('\0').filter(Boolean);
    for (const f of files) {
      const from = path.join(root, f);
      if (!fs.existsSync(from) || fs.lstatSync(from).isSymbolicLink()) continue; // deleted in the work tree, or node_modules
      fs.mkdirSync(path.dirname(path.join(src, f)), { recursive: true });
      fs.copyFileSync(from, path.join(src, f));
    }
    expect(fs.existsSync(path.join(src, 'build'))).toBe(false);
    // The dev tools (tsc) come from the repository's install; no addon is reachable from there.
    fs.symlinkSync(fs.realpathSync(path.join(root, 'node_modules')), path.join(src, 'node_modules'));
    const packed = JSON.parse(ok(sh('npm', ['pack', '--json', '--pack-destination', tmp], src), 'npm pack').stdout.replace(/^[^[]*/, ''));
    mainTgz = path.join(tmp, packed[0].filename);
    const names: string[] = packed[0].files.map((f: { path: string }) => f.path);
    for (const f of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/cli.js', 'dist/cli/doctor.js',
      'CMakeLists.txt', 'native/runtime/backend.cpp', 'bindings/addon.cpp', 'test/fixtures/radio/vit-b16-v2heads/model.safetensors'])
      expect({ f, shipped: names.includes(f) }).toEqual({ f, shipped: true });
    // Source maps would point at ts/, which is not shipped.
    expect(names.filter((n) => n.endsWith('.map') || n.startsWith('build/') || n.startsWith('scripts/') || n.startsWith('ts/'))).toEqual([]);
    const scripts = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8')).scripts ?? {};
    expect(Object.keys(scripts).filter((s) => ['preinstall', 'install', 'postinstall', 'prepare'].includes(s))).toEqual([]);
  });

  test('pack-platform makes the platform package from this build: os, cpu and libc set, the .node, README, LICENSE', () => {
    const out = path.join(tmp, 'platform');
    const r = ok(sh(process.execPath, [path.join(root, 'scripts', 'pack-platform.js'), '--out', out], root), 'pack-platform');
    const line = /^pack-platform: (.*\.tgz)$/m.exec(r.stdout);
    expect(line).not.toBeNull();
    platformTgz = line![1];
    const pkg = JSON.parse(fs.readFileSync(path.join(out, `${process.platform}-${process.arch}`, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ name: platformName, version: manifest.version, os: [process.platform], cpu: [process.arch], libc: ['glibc'], main: 'am-radio.node' });
    const listing = ok(sh('tar', ['tzf', platformTgz], tmp), 'tar').stdout.split('\n').filter(Boolean).sort();
    expect(listing).toEqual(['package/LICENSE', 'package/README.md', 'package/am-radio.node', 'package/package.json']);
    expect(manifest.optionalDependencies[platformName]).toBe(manifest.version);
  });

  test('installed into an empty project with --strict-allow-scripts, the README\'s consumer lines and the CLI run', () => {
    const app = path.join(tmp, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    const { install, code, expected } = readmeConsumer();
    expect(install).toBe('npm install am-radio');
    // The README's command, with the two local tarballs in place of the registry's am-radio and its platform package.
    const r = ok(sh('npm', ['install', '--strict-allow-scripts', mainTgz, platformTgz], app), 'npm install');
    expect(r.all).not.toMatch(/install-scripts|allow-scripts/);
    expect(fs.existsSync(path.join(app, 'node_modules', platformName, 'am-radio.node'))).toBe(true);
    // The source-build tools are not what every install carries.
    for (const dep of ['cmake-js', 'node-addon-api', 'node-gyp-build']) expect({ dep, installed: fs.existsSync(path.join(app, 'node_modules', dep)) }).toEqual({ dep, installed: false });

    fs.writeFileSync(path.join(app, 'radio.mjs'), code);
    const run = ok(sh(process.execPath, ['radio.mjs'], app), 'the README code');
    expect(run.stdout.trim()).toBe(expected);

    const npx = (args: string[]) => sh('npx', ['--no', 'am-radio', ...args], app);
    const demo = ok(npx(['demo']), 'npx am-radio demo');
    expect(demo.stdout).toContain('demo: every check passed');
    // npx keeps --help and --version (and with --no, -v) for itself unless they follow `--`; `help` reaches the
    // command as typed.
    const bin = (args: string[]) => sh('npx', ['--no', '--', 'am-radio', ...args], app);
    for (const [what, r] of [['npx am-radio help', npx(['help'])], ['npx -- am-radio --help', bin(['--help'])]] as const) {
      ok(r, what);
      for (const c of ['demo', 'infer', 'distill', 'teach', 'doctor', 'build']) expect({ what, c, listed: new RegExp(`^  ${c} `, 'm').test(r.stdout) }).toEqual({ what, c, listed: true });
    }
    expect(ok(bin(['--version']), 'npx -- am-radio --version').stdout).toBe(`${manifest.version}\n`);
    const doctor = ok(npx(['doctor']), 'npx am-radio doctor');
    expect(doctor.stdout).toContain(`binary: platform package ${platformName}@${manifest.version}: ${path.join(fs.realpathSync(app), 'node_modules', platformName, 'am-radio.node')}`);
    expect(doctor.stdout).toMatch(/^ {2}cpu +available/m);
  });

  test('without the platform package: the Error says how to build, and `npx am-radio build` builds one that loads', () => {
    const app = path.join(tmp, 'app-source');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app-source', version: '1.0.0', private: true }));
    const peers = manifest.peerDependencies as Record<string, string>;
    ok(sh('npm', ['install', '--strict-allow-scripts', '--omit=optional', mainTgz], app), 'npm install --omit=optional');
    expect(fs.existsSync(path.join(app, 'node_modules', platformName))).toBe(false);
    const npx = (args: string[]) => sh('npx', ['--no', 'am-radio', ...args], app);
    const none = npx(['doctor']);
    expect(none.status).toBe(1);
    expect(none.stderr).toContain(`platform package ${platformName}: not installed`);
    const advice = /^ {2}(npm install --save-dev .*) && npx am-radio build$/m.exec(none.stderr);
    expect(advice).not.toBeNull();
    const noTools = npx(['build']);
    expect(noTools.status).toBe(1);
    expect(noTools.stderr).toContain('am-radio build: cmake-js and node-addon-api not installed; run:');
    // What the Error says to run, as it says it.
    expect(advice![1]).toBe(`npm install --save-dev cmake-js@${peers['cmake-js']} node-addon-api@${peers['node-addon-api']}`);
    ok(sh('sh', ['-c', `${advice![1]} --strict-allow-scripts`], app), advice![1]);
    // cpu only: the cuda and sim parts are the same sources the repository's own build compiles, and would add
    // many minutes to what this checks (cmake-js found from the consumer's project, its progress shown, the result loaded).
    const built = ok(npx(['build', '--no-cuda', '--no-sim']), 'npx am-radio build');
    expect(built.all).toMatch(/\[\d+\/\d+\] /); // the build tool's progress reached the user
    expect(built.stdout).toContain('am-radio build: wrote ');
    const doctor = ok(npx(['doctor']), 'npx am-radio doctor');
    expect(doctor.stdout).toContain(`binary: local build: ${path.join(fs.realpathSync(app), 'node_modules', 'am-radio', 'build', 'Release', 'am_radio.node')}`);
    expect(doctor.stdout).toMatch(/^ {2}cuda +not compiled/m);
    const { code, expected } = readmeConsumer();
    fs.writeFileSync(path.join(app, 'radio.mjs'), code);
    expect(ok(sh(process.execPath, ['radio.mjs'], app), 'the README code').stdout.trim()).toBe(expected);
  });
});
