// E-RADIO's checkpoint config and the continuous position bias's fixed inputs, against what the reference made:
// the configs of the E-RADIO cases scripts/fixtures/make_eradio_cases.py made with the reference code, the window sizes
// its set_optimal_window_size picks, and the CPB buffers its checkpoints hold (relative_coords_table,
// relative_position_index) for the window each case ran at.
import * as fs from 'fs';
import * as path from 'path';

import { SafetensorsFile } from '../ts/io/safetensors';
import { optimalWindowSize, parseERadioConfig } from '../ts/model/eradio/config';
import { cpbCoordinates, cpbIndex } from '../ts/model/eradio/cpb';
import { parseRadioConfig } from '../ts/model/config';
import { RADIO_FIXTURES as ROOT } from './support/radio-fixtures';

const CASES: Array<{ dir: string; model: string; ws: number; pretrained: number; stride: number; neckDim: number; heads: string[] }> = [
  { dir: path.join(ROOT, 'eradio-8x-ws12-192x320'), model: 'eradio_xxxtiny_8x_ws12', ws: 12, pretrained: 12, stride: 16, neckDim: 256, heads: ['clip', 'dino_v2'] },
  { dir: path.join(ROOT, 'eradio-8x-ws16-neck1'), model: 'eradio_xxxtiny_8x_ws16', ws: 8, pretrained: 16, stride: 8, neckDim: 256, heads: ['clip', 'dino_v2'] },
];

const readConfig = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));

describe('E-RADIO config.json', () => {
  test.each(CASES.map((c) => [path.basename(c.dir), c] as const))('%s parses to its architecture, window and heads', (_name, c) => {
    const cfg = parseERadioConfig(readConfig(c.dir), 'config.json');
    expect(cfg.timmModel).toBe(c.model);
    expect(cfg.windowSize).toBe(c.ws);
    expect(cfg.arch.windowSize).toBe(c.pretrained);
    expect(cfg.featureStride).toBe(c.stride);
    expect(cfg.arch.neckDim).toBe(c.neckDim);
    expect(cfg.adaptors.map((a) => a.name)).toEqual(c.heads);
    for (const a of cfg.adaptors) expect(a.summary.inputDim).toBe(c.neckDim);
  });

  test('the ViT parser still refuses E-RADIO by name', () => {
    expect(() => parseRadioConfig(readConfig(CASES[0].dir), 'config.json')).toThrow(/E-RADIO/);
  });

  test('what the port does not build is an Error naming the field', () => {
    const base = readConfig(CASES[0].dir);
    const withKwargs = (kw: Record<string, unknown>) => ({ ...base, args: { ...base.args, model_kwargs: kw } });
    expect(() => parseERadioConfig(withKwargs({}), 'c')).toThrow('return_full_features must be true');
    expect(() => parseERadioConfig(withKwargs({ return_full_features: true, use_shift: true }), 'c')).toThrow('model_kwargs.use_shift = true is not supported');
    expect(() => parseERadioConfig(withKwargs({ return_full_features: true, cpb_mlp_hidden: 32 }), 'c')).toThrow('eradio_xxxtiny_8x_ws12 fixes it');
    expect(() => parseERadioConfig(withKwargs({ return_full_features: true, dim: 8 }), 'c')).toThrow('model_kwargs.dim is not supported');
    expect(() => parseERadioConfig({ ...base, args: { ...base.args, model: 'eradio_huge' } }, 'c')).toThrow('"eradio_huge" is not a registered E-RADIO architecture');
    expect(() => parseERadioConfig({ ...base, eradio_window_size: 0 }, 'c')).toThrow('eradio_window_size: the window size must be a positive integer');
    // A changeable keyword is taken.
    const xxxtiny = { ...base, args: { ...base.args, model: 'eradio_xxxtiny', model_kwargs: { return_full_features: true, cpb_mlp_hidden: 32, qkv_bias: true } } };
    const cfg = parseERadioConfig(xxxtiny, 'c');
    expect(cfg.arch.cpbHidden).toBe(32);
    expect(cfg.arch.qkvBias).toBe(true);
    expect(cfg.windowSize).toBe(16);
  });
});

describe('optimalWindowSize (set_optimal_window_size)', () => {
  test('the reference table and its rule', () => {
    // The reference's docstring table, and the largest divisor of side // 32 that is <= 16 elsewhere.
    expect([224, 256, 384, 512].map((r) => optimalWindowSize(r))).toEqual([7, 8, 12, 16]);
    expect(optimalWindowSize([512, 384])).toBe(12);
    expect(optimalWindowSize(1024)).toBe(16);
    expect(optimalWindowSize(544)).toBe(1); // 544 // 32 = 17, a prime above 16
    expect(optimalWindowSize(640)).toBe(10);
    expect(optimalWindowSize(512, 8)).toBe(8);
    expect(() => optimalWindowSize(16)).toThrow('resolution must be an integer >= 32');
  });
});

describe('continuous position bias inputs', () => {
  test.each(CASES.map((c) => [path.basename(c.dir), c] as const))('%s: coordinate table and index equal the reference buffers', async (_name, c) => {
    const file = await SafetensorsFile.open(path.join(c.dir, 'model.safetensors'));
    try {
      const prefix = 'radio_model.model.levels.3.blocks.0.attention_blocks.0.attn.pos_emb_funct.';
      const n = 2 * c.ws - 1;
      const table = await file.readFloat(`${prefix}relative_coords_table`, [1, n, n, 2]);
      const ours = cpbCoordinates(c.ws, c.pretrained);
      let worst = 0;
      for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - table.data[i]));
      // f32 throughout; the reference's log2 may round its last bit differently from Math.log2.
      expect(worst).toBeLessThan(1e-6);
      const index = await file.readInts(`${prefix}relative_position_index`, [c.ws * c.ws, c.ws * c.ws]);
      expect(Array.from(cpbIndex(c.ws))).toEqual(index.data);
    } finally {
      await file.close();
    }
  });
});
