// Where the addon is loaded from, and the Error when it cannot be: each case runs in a child process on a copy of
// the built package (dist/ + package.json) in a temporary folder, so local build, platform package and
// AM_RADIO_NATIVE can be arranged one by one.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..');
const addon = path.join(root, 'build', 'Release', 'am_radio.node');
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;

let tmp: string;
beforeAll(() => {
  for (const f of [addon, path.join(root, 'dist', 'index.js')])
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: npm test builds it (pretest); run npm run build`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-loader-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A package folder with dist/ and package.json and, as asked, a local build and a platform package. */
function makePackage(name: string, opts: { local?: 'real' | 'garbage'; platform?: { version: string } } = {}): string {
  const dir = path.join(tmp, name, 'node_modules', 'am-radio');
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  if (opts.local) {
    fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true });
    const file = path.join(dir, 'build', 'Release', 'am_radio.node');
    if (opts.local === 'real') fs.copyFileSync(addon, file);
    else fs.writeFileSync(file, 'not an ELF file');
  }
  if (opts.platform) {
    const p = path.join(tmp, name, 'node_modules', '@am-radio', `${process.platform}-${process.arch}`);
    fs.mkdirSync(p, { recursive: true });
    fs.copyFileSync(addon, path.join(p, 'am-radio.node'));
    fs.writeFileSync(path.join(p, 'package.json'), JSON.stringify({ name: `@am-radio/${process.platform}-${process.arch}`, version: opts.platform.version, main: 'am-radio.node' }));
  }
  return dir;
}

function run(dir: string, code: string, env: Record<string, string> = {}) {
  const e = { ...process.env, ...env };
  if (!('AM_RADIO_NATIVE' in env)) delete e.AM_RADIO_NATIVE;
  const r = spawnSync(process.execPath, ['-e', `const m = require(${JSON.stringify(path.join(dir, 'dist', 'index.js'))});\n${code}`], { encoding: 'utf8', env: e, cwd: tmp });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const report = 'try { m.backends(); console.log(JSON.stringify(m.nativeBinary())); } catch (e) { console.log(e.message); process.exitCode = 3; }';

describe('loading the addon', () => {
  test('importing the package does not open the addon; the first use does, and its Error lists every place tried', () => {
    const dir = makePackage('none');
    const r = run(dir, `console.log('imported', typeof m.tensor);\n${report}`);
    expect(r.stdout).toMatch(/^imported function\n/);
    expect(r.status).toBe(3);
    const local = path.join(dir, 'build', 'Release', 'am_radio.node');
    expect(r.stdout).toContain(`no native addon loads on ${process.platform}-${process.arch}`);
    expect(r.stdout).toContain(`1. local build ${local}: not built`);
    expect(r.stdout).toContain(`2. platform package @am-radio/${process.platform}-${process.arch}: not installed`);
    expect(r.stdout).toContain('npm install --save-dev cmake-js@^8.0.0 node-addon-api@^8.9.2 && npx am-radio build');
  });

  test('a local build that does not load is named with the loader\'s reason', () => {
    const dir = makePackage('garbage', { local: 'garbage' });
    const r = run(dir, report);
    expect(r.status).toBe(3);
    expect(r.stdout).toMatch(/1\. local build .*am_radio\.node: .*(invalid ELF header|file too short)/);
  });

  test('the platform package loads when there is no local build, and must be the same version', () => {
    const ok = run(makePackage('platform', { platform: { version } }), report);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ source: 'platform package', package: `@am-radio/${process.platform}-${process.arch}`, version });
    const old = run(makePackage('old-platform', { platform: { version: '0.0.1' } }), report);
    expect(old.status).toBe(3);
    expect(old.stdout).toContain(`2. platform package @am-radio/${process.platform}-${process.arch}@0.0.1 at `);
    expect(old.stdout).toContain(`am-radio is ${version}; install @am-radio/${process.platform}-${process.arch}@${version}`);
  });

  test('a local build wins over the platform package', () => {
    const dir = makePackage('both', { local: 'real', platform: { version } });
    const r = run(dir, report);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ source: 'local build', file: path.join(dir, 'build', 'Release', 'am_radio.node') });
  });

  test('AM_RADIO_NATIVE, when set, is the only place tried', () => {
    const dir = makePackage('override', { local: 'real' });
    const missing = path.join(tmp, 'nowhere.node');
    const r = run(dir, report, { AM_RADIO_NATIVE: missing });
    expect(r.status).toBe(3);
    expect(r.stdout).toContain(`1. AM_RADIO_NATIVE=${missing}: no such file (when set, it is the only place tried)`);
    expect(r.stdout).not.toContain('local build');
    const good = run(dir, report, { AM_RADIO_NATIVE: addon });
    expect(JSON.parse(good.stdout)).toEqual({ source: 'AM_RADIO_NATIVE', file: addon });
  });
});
