// ts/model/layout.ts lists a checkpoint's tensors from its config: the list must be exactly what the reference
// implementation saved for the same config (its own fixtures), minus the fixed buffers, so that the trainer's
// random-init students and the benchmarks' random checkpoints have every key RadioModel and RADIO load.
import * as fs from 'fs';
import * as path from 'path';

import { SafetensorsFile } from '../ts';
import { parseRadioConfig } from '../ts/model/config';
import { radioBuffers, radioTensorLayout, randomCheckpointTensors } from '../ts/model/layout';
import { RADIO_FIXTURES } from './support/radio-fixtures';

// MLP v2 heads; v1 heads with registers; LayerScale + final norm + ViTDet; a trainer-written checkpoint.
const CASES = ['vit-b16-v2heads', 'vit-p14-reg-v1heads', 'vit-vitdet-ls', 'trained-student'];

test.each(CASES)('%s: the layout is the reference checkpoint\'s keys and shapes', async (name) => {
  const dir = path.join(RADIO_FIXTURES, name);
  const config = parseRadioConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), name);
  const file = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    // LayerScale (ls*.grandma) is not made by the layout (a random student has none), nor is timm's unused reg_token.
    const skip = /\.ls[12]\.grandma$|reg_token$/;
    const fixed = new Set(Object.keys(radioBuffers(config)));
    const saved = Object.fromEntries(file.keys().filter((k) => !fixed.has(k) && !skip.test(k)).map((k) => [k, file.entry(k).shape]));
    const listed = Object.fromEntries(radioTensorLayout(config).map((e) => [`radio_model.${e.key}`, e.shape]));
    expect(listed).toEqual(saved);
  } finally {
    await file.close();
  }
  const random = randomCheckpointTensors(config, 3);
  for (const [k, e] of Object.entries(random))
    if (e.dtype === 'F32') expect({ k, finite: Array.from(e.data as Float32Array).every(Number.isFinite) }).toEqual({ k, finite: true });
});

test('what the layout cannot make is refused by name', () => {
  const dir = path.join(RADIO_FIXTURES, 'vit-norm-heads');
  const config = parseRadioConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), 'vit-norm-heads');
  expect(() => radioTensorLayout(config)).toThrow('radioTensorLayout: feature-normalizer checkpoints are not made');
  const attn = path.join(RADIO_FIXTURES, 'vit-attn-head');
  const attnConfig = parseRadioConfig(JSON.parse(fs.readFileSync(path.join(attn, 'config.json'), 'utf8')), 'vit-attn-head');
  expect(() => randomCheckpointTensors(attnConfig)).toThrow(/randomCheckpointTensors: attention feature heads are not made \(adaptors\.dino_v2\.feat_mlp\)/);
});
