// The installed package's own folder, found from this file's location, so that nothing depends on the cwd.
import * as fs from 'fs';
import * as path from 'path';

let root: string | undefined;

/** The nearest folder above this file holding package.json: the package root from dist/, dist-bench/ts/ or ts/. */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = path.join(__dirname, '..');
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`am-radio: no package.json above ${__dirname}`);
    dir = parent;
  }
  root = dir;
  return dir;
}

/** The package's own package.json, parsed. */
export function packageJson(): { name: string; version: string; peerDependencies?: Record<string, string> } {
  return JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8'));
}
