#!/usr/bin/env node
// Makes the platform binary package (@am-radio/<platform>-<arch>) from a build: a folder with package.json (os,
// cpu and libc, so npm installs it only where it loads), the stripped .node, README and LICENSE; then `npm pack`s it.
//   node scripts/pack-platform.js [--binary build/Release/am_radio.node] [--out build-platform] [--no-pack]
// Needs dist/ (npm run build:ts): the package name and the backends list come from the package's own loader.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { symbolVersions } = require('./glibc-floor');

const root = path.join(__dirname, '..');

function parseArgs(argv) {
  const o = { binary: path.join(root, 'build', 'Release', 'am_radio.node'), out: path.join(root, 'build-platform'), pack: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--binary') o.binary = path.resolve(value());
    else if (a === '--out') o.out = path.resolve(value());
    else if (a === '--no-pack') o.pack = false;
    else throw new Error(`pack-platform: unknown argument ${JSON.stringify(a)} (--binary FILE, --out DIR, --no-pack)`);
  }
  return o;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.binary)) throw new Error(`pack-platform: ${o.binary} does not exist; build it first (npm run build)`);
  if (!fs.existsSync(path.join(root, 'dist', 'native.js'))) throw new Error('pack-platform: dist/ is not built; run npm run build:ts');
  const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  // Load the binary through the package's loader, so a binary that does not load is never packed.
  process.env.AM_RADIO_NATIVE = o.binary;
  const { platformPackageName, glibcRuntime } = require(path.join(root, 'dist', 'native.js'));
  const { backends } = require(path.join(root, 'dist', 'index.js'));
  const compiled = backends().filter((b) => b.compiled).map((b) => b.name);
  const name = platformPackageName();
  if (manifest.optionalDependencies?.[name] !== manifest.version)
    throw new Error(`pack-platform: package.json's optionalDependencies must name ${name}: "${manifest.version}" for am-radio to install it`);
  const musl = name.endsWith('-musl');
  const dir = path.join(o.out, name.slice('@am-radio/'.length));
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'am-radio.node');
  fs.copyFileSync(o.binary, file);
  // Debug symbols are most of the file and no user needs them; the dynamic symbol table stays.
  execFileSync('strip', ['--strip-unneeded', file]);
  const floor = process.platform === 'linux' && !musl ? symbolVersions(file).newest.GLIBC : null;
  const pkg = {
    name,
    version: manifest.version,
    description: `The native addon of am-radio ${manifest.version} for ${process.platform}-${process.arch}${musl ? ' (musl)' : ''}; installed by am-radio as an optional dependency`,
    license: manifest.license,
    os: [process.platform],
    cpu: [process.arch],
    ...(process.platform === 'linux' ? { libc: [musl ? 'musl' : 'glibc'] } : {}),
    main: 'am-radio.node',
    exports: { '.': './am-radio.node', './package.json': './package.json' },
    files: ['am-radio.node', 'README.md', 'LICENSE'],
    engines: manifest.engines,
  };
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  fs.copyFileSync(path.join(root, 'LICENSE'), path.join(dir, 'LICENSE'));
  const cuda = compiled.includes('cuda');
  fs.writeFileSync(path.join(dir, 'README.md'), [
    `# ${name}`,
    '',
    `The prebuilt native addon of [am-radio](https://www.npmjs.com/package/am-radio) ${manifest.version} for ${process.platform}-${process.arch}.`,
    'npm installs it with `npm install am-radio` on this platform (an optional dependency with `os`, `cpu` and `libc`',
    'fields); it is not meant to be used directly.',
    '',
    `- backends compiled in: ${compiled.join(', ')}`,
    ...(floor ? [`- needs glibc ${floor} or newer (no other library: libstdc++ and libgcc are linked in)`] : []),
    ...(cuda ? ['- the cuda backend links the CUDA runtime in and needs an NVIDIA driver R580 or newer (CUDA 13) and a GPU of compute capability 8.0+; without them the cpu and sim backends still work'] : []),
    `- built on glibc ${glibcRuntime() ?? 'n/a'} with Node ${process.version} (Node-API 8, so any Node ${manifest.engines.node} loads it)`,
    '',
  ].join('\n'));
  console.log(`pack-platform: ${dir} (${compiled.join(', ')}${floor ? `, glibc >= ${floor}` : ''}, ${(fs.statSync(file).size / 1e6).toFixed(1)} MB)`);
  if (!o.pack) return;
  const packed = JSON.parse(execFileSync('npm', ['pack', dir, '--json', '--pack-destination', o.out], { encoding: 'utf8' }));
  console.log(`pack-platform: ${path.join(o.out, packed[0].filename)}`);
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
}
