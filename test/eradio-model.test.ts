// ERadioModel against the reference implementation's own E-RADIO runs (test/fixtures/radio/eradio-*, made by
// scripts/fixtures/make_eradio_cases.py and the shared eradio-xxxtiny case): every head's summary and features in
// f32 and bf16, and one training step (BatchNorm with batch statistics, the loss, the gradients, the running-stat
// update) against train-eradio-8x-ws12.
import * as fs from 'fs';
import * as path from 'path';

import { ERadioModel, tensor } from '../ts';
import type { Device, DType } from '../ts';
import { expectWithin, readIo } from './support/radio-fixtures';
import { describeEachDevice, poisonOutputs, relativeError } from './support/reference';
import { TrainFixture } from './support/radio-train-fixture';

poisonOutputs();

const ROOT = path.join(__dirname, 'fixtures', 'radio');
const TOLERANCE = { f32: 1e-4, bf16: 2e-2 } as const;
const HEADS = ['backbone', 'clip', 'dino_v2'];
// [case, window size the reference ran at]: conv_base with a changed window (xxxtiny, 8 at 256 px); depthwise
// pre-convs, pooled mixers and the layer-level resize (192 × 320 at window 12); the stage-1 neck (H/8 features).
const CASES: Array<[string, number]> = [['eradio-xxxtiny', 8], ['eradio-8x-ws12-192x320', 12], ['eradio-8x-ws16-neck1', 8]];

describeEachDevice('E-RADIO reference cases, eval, on %s', (device: Device) => {
  describe.each(CASES)('%s', (name, ws) => {
    test.each(['f32', 'bf16'] as const)('%s: backbone and every adaptor, summary and features', async (dtype: DType) => {
      const io = await readIo(path.join(ROOT, name, 'io.safetensors'));
      const model = await ERadioModel.load(path.join(ROOT, name), { device, dtype });
      try {
        expect(model.windowSize).toBe(ws);
        const img = io.get('images')!;
        const out = model.forward(tensor(img.data, img.shape, { device }));
        const [H, W] = img.shape.slice(2);
        for (const head of HEADS) {
          const [fh, fw] = model.featureGrid(head, H, W);
          for (const part of ['summary', 'features'] as const) {
            const ref = io.get(`${head}.${part}`)!;
            const t = out[head][part];
            expect(t.shape).toEqual(ref.shape);
            if (part === 'features') expect(ref.shape[1]).toBe(fh * fw);
            expectWithin(`${name} ${dtype} ${head}.${part}`, relativeError(await t.toArray(), ref.data), TOLERANCE[dtype as 'f32' | 'bf16']);
          }
        }
      } finally {
        model.dispose();
      }
    });
  });

  test('input sizes, window size and load errors name the problem', async () => {
    const model = await ERadioModel.load(path.join(ROOT, 'eradio-xxxtiny'), { device });
    try {
      expect(() => model.forward(tensor(new Float32Array(3 * 100 * 64), [1, 3, 100, 64], { device }))).toThrow('input resolution 100x64 is not a multiple of 32 (E-RADIO halves it five times); nearest supported: 96x64');
      expect(() => model.forward(tensor(new Float32Array(4 * 64 * 64), [1, 4, 64, 64], { device }))).toThrow('expected [B, 3, H, W]');
      expect(() => model.setWindowSize(0)).toThrow('window size must be a positive integer');
      expect(model.setOptimalWindowSize(512)).toBe(16);
      expect(model.windowSize).toBe(16);
      expect(model.setOptimalWindowSize([384, 640])).toBe(12);
    } finally {
      model.dispose();
    }
    await expect(ERadioModel.load(path.join(ROOT, 'vit-b16-v2heads'), { device })).rejects.toThrow('is not a registered E-RADIO architecture');
  });
});

describeEachDevice('E-RADIO training step against the reference, on %s', (device: Device) => {
  test('f32: student outputs, loss, every stored gradient and the BatchNorm running statistics after the step', async () => {
    const fx = await TrainFixture.read(path.join(ROOT, 'train-eradio-8x-ws12'));
    const spec = JSON.parse(await fs.promises.readFile(path.join(fx.dir, 'case.json'), 'utf8'));
    const model = await ERadioModel.load(path.join(ROOT, spec.model_from), { device });
    try {
      model.train();
      const omitted: string[] = spec.omitted_grads;
      const out = model.forward(fx.onDevice('images', device));
      for (const head of HEADS)
        for (const part of ['summary', 'features'] as const) {
          const ref = fx.io.get(`student.${head}.${part}`)!;
          expectWithin(`student ${head}.${part}`, relativeError(await out[head][part].toArray(), ref.data), 1e-4);
        }
      const loss = fx.lossOf(out, device);
      expectWithin('loss', Math.abs((await loss.total.toArray())[0] - spec.total) / spec.total, 1e-5);
      loss.total.backward();
      const params = new Map(model.namedParameters());
      const bare = (k: string) => k.replace(/^radio_model\./, '');
      const keys = fx.gradKeys();
      expect(keys.length).toBe(spec.num_grads);
      for (const k of keys) {
        const p = params.get(k);
        expect({ k, found: !!p }).toEqual({ k, found: true });
        const ref = fx.io.get(`grad.${k}`)!;
        const got = await p!.grad!.toArray();
        // A BatchNorm bias whose output feeds a training-mode BatchNorm through a conv has an analytic gradient of
        // zero (the next norm removes every per-channel shift): the reference stores rounding noise (~1e-8 against
        // ~1e-1 for the weight beside it). Such a gradient is held to the weight gradient's scale instead.
        const sibling = fx.io.get(`grad.${k.replace(/\.bias$/, '.weight')}`);
        const norm = (a: ArrayLike<number>) => Math.sqrt(Array.from(a).reduce((t, v) => t + v * v, 0));
        if (k.endsWith('.bias') && sibling && norm(ref.data) < 1e-4 * norm(sibling.data)) {
          const diff = Float64Array.from(got, (v, i) => v - ref.data[i]);
          expectWithin(`grad ${k} (analytically zero)`, norm(diff) / norm(sibling.data), 1e-4);
        } else expectWithin(`grad ${k}`, relativeError(got, ref.data), 1e-4);
      }
      // Every trainable parameter outside the omitted blocks got a gradient the reference also stored.
      for (const [k, p] of params) if (p.requiresGrad && !omitted.some((o) => bare(k).startsWith(o))) expect({ k, stored: keys.includes(k) }).toEqual({ k, stored: true });
      const buffers = new Map(model.namedBuffers());
      const after = [...fx.io.keys()].filter((k) => k.startsWith('after.'));
      expect(after.length).toBeGreaterThan(0);
      for (const k of after) {
        const key = k.slice('after.'.length);
        if (key.endsWith('num_batches_tracked')) continue;
        const b = buffers.get(key);
        expect({ key, found: !!b }).toEqual({ key, found: true });
        expectWithin(`running stat ${key}`, relativeError(await b!.toArray(), fx.io.get(k)!.data), 1e-5);
      }
    } finally {
      model.dispose();
    }
  });
});
