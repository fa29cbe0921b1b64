// Regenerates docs/infer-example.pca.png, the picture in the README's "Run on your images": a scene drawn here with
// sharp (no photo is downloaded or shipped), run through `am-radio infer` with the embedded checkpoint on cpu.
// Usage, after `npm run build:ts`: node docs/infer-example.js
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const sharp = require('sharp');

const W = 256;
const H = 192;

// Sky gradient, a sun, hills and a striped field: regions with distinct colours and textures for the features to separate.
function pixel(x, y) {
  const sun = (x - 190) ** 2 + (y - 48) ** 2 < 22 ** 2;
  const hill = y > 110 + 25 * Math.sin(x / 30);
  const field = y > 150;
  if (sun) return [250, 210, 60];
  if (field) return (x + 2 * y) % 20 < 10 ? [200, 170, 60] : [150, 120, 40];
  if (hill) return [40, 120 + Math.round(40 * Math.sin(x / 11)), 50];
  return [90 + y / 2, 140 + y / 3, 230];
}

async function main() {
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) raw.set(pixel(x, y).map(Math.round), (y * W + x) * 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'am-radio-example-'));
  try {
    const input = path.join(dir, 'infer-example.png');
    await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toFile(input);
    const cli = path.join(__dirname, '..', 'dist', 'cli.js');
    execFileSync(process.execPath, [cli, 'infer', input, '--out', dir], { stdio: 'inherit' });
    fs.copyFileSync(path.join(dir, 'infer-example.pca.png'), path.join(__dirname, 'infer-example.pca.png'));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
