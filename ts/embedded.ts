// The tiny RADIO checkpoint shipped inside the package, with the reference implementation's outputs on two images.
import * as fs from 'fs';
import * as path from 'path';

import { packageRoot } from './package-root';

/**
 * The absolute path of the embedded checkpoint's folder (config.json, model.safetensors and io.safetensors with the
 * reference's images and outputs): a 4-block ViT-B/16-shaped RADIO model (D 64, clip / dino_v2 / sam heads).
 * Found from the installed package, not the cwd, so `RadioModel.load(embeddedCheckpoint())` works from anywhere.
 */
export function embeddedCheckpoint(): string {
  const dir = path.join(packageRoot(), 'test', 'fixtures', 'radio', 'vit-b16-v2heads');
  for (const f of ['config.json', 'model.safetensors', 'io.safetensors'])
    if (!fs.existsSync(path.join(dir, f))) throw new Error(`am-radio: the embedded checkpoint is incomplete: ${path.join(dir, f)} is missing (reinstall the package)`);
  return dir;
}
