// ops.interpolate (bilinear, nearest, bicubic, antialias, size or scaleFactor), ops.cpe and ops.cpeTrain on every backend: against a naive float64 reference (gradients against
// finite differences of it) and PyTorch fixtures, their defining properties, determinism, and bad input.
import * as fs from 'fs';
import * as path from 'path';

import { Device, DType, ops, randn, Tensor, tensor, zeros } from '../ts';
import type { InterpolateOptions } from '../ts/ops';
import { native } from '../ts/native';
import { cropTokens, RefGeometry, refCpe, refForward, weightedSum } from './support/interpolate-reference';
import { describeEachDevice, finiteDifferenceGrad, freshSeed, poisonOutputs, randomArray, relativeError, rng, roundBf16, testDevices } from './support/reference';

poisonOutputs();

const TOL: Record<'f32' | 'bf16', number> = { f32: 1e-5, bf16: 1e-2 };
const DTYPES = ['f32', 'bf16'] as const;
const quantize = (x: ArrayLike<number>, dtype: DType) => Float64Array.from(x, dtype === 'bf16' ? roundBf16 : Math.fround);
const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Runs op on x (which requires a gradient) and backward of Σ out · weight. */
async function runWithGrad(x: Tensor, op: (x: Tensor) => Tensor, weight: ArrayLike<number>) {
  const out = op(x);
  const w = tensor(Float32Array.from(weight), out.shape, { device: x.device, dtype: x.dtype });
  out.mul(w).sum().backward();
  return { out: await out.toArray(), shape: out.shape, dtype: out.dtype, grad: await x.grad!.toArray() };
}

// ---------------------------------------------------------------------------------------------------------------
// Cases with a float64 reference.

interface Case {
  name: string;
  shape: number[];
  run: (x: Tensor) => Tensor;
  ref: (x: ArrayLike<number>) => Float64Array;
}

interface ResizeSpec {
  mode: 'bilinear' | 'nearest' | 'bicubic';
  alignCorners?: boolean;
  antialias?: boolean;
  size?: [number, number];
  scaleFactor?: [number, number];
}

function resizeSpecCase(layout: 'NCHW' | 'NLC', dims: number[], spec: ResizeSpec): Case {
  const [B, C, inH, inW] = dims;
  const { mode, alignCorners = false, antialias = false, size, scaleFactor: sf } = spec;
  const [outH, outW] = size ?? [Math.floor(inH * sf![0]), Math.floor(inW * sf![1])];
  const geo: RefGeometry = {
    layout, mode, alignCorners, antialias, batch: B, channels: C, inH, inW, outH, outW, ...(sf ? { factorH: sf[0], factorW: sf[1] } : {}),
  };
  const opts: InterpolateOptions = {
    mode, layout, ...(size ? { size } : { scaleFactor: sf }), ...(mode !== 'nearest' ? { alignCorners } : {}),
    ...(antialias ? { antialias } : {}), ...(layout === 'NLC' ? { grid: [inH, inW] } : {}),
  };
  const to = size ? size.join('x') : `scaleFactor [${sf!.join(', ')}]`;
  return {
    name: `${mode}${antialias ? ' antialias' : ''} ${layout} B${B} C${C} ${inH}x${inW} -> ${to}${alignCorners ? ' alignCorners' : ''}`,
    shape: layout === 'NCHW' ? [B, C, inH, inW] : [B, inH * inW, C],
    run: (x) => ops.interpolate(x, opts),
    ref: (x) => refForward(geo, x),
  };
}

function resizeCase(layout: 'NCHW' | 'NLC', mode: 'bilinear' | 'nearest' | 'bicubic', alignCorners: boolean, dims: number[], size: [number, number]): Case {
  return resizeSpecCase(layout, dims, { mode, alignCorners, size });
}

function cpeCase(G: number, D: number, gridH: number, gridW: number, alignCorners: boolean): Case {
  return {
    name: `cpe G${G} D${D} -> ${gridH}x${gridW}${alignCorners ? ' alignCorners' : ''}`,
    shape: [1, G * G, D],
    run: (x) => ops.cpe(x, { gridH, gridW, alignCorners }),
    ref: (x) => refCpe(x, G, D, gridH, gridW, alignCorners),
  };
}

/** Crops drawn the way RADIO draws them (spec §1.4), from a seeded generator. */
function radioCrops(B: number, seed: number): { scale: number[]; offset: number[] } {
  const r = rng(seed);
  const scale: number[] = [];
  const offset: number[] = [];
  for (let b = 0; b < B; b++) {
    const s = Math.sqrt(0.1) + r() * (1 - Math.sqrt(0.1));
    const a = Math.exp(Math.log(3 / 4) + r() * (Math.log(4 / 3) - Math.log(3 / 4)));
    const sx = Math.min(1, s * a), sy = Math.min(1, s / a);
    scale.push(Math.fround(sx), Math.fround(sy));
    offset.push(Math.fround(r() * (1 - sx)), Math.fround(r() * (1 - sy)));
  }
  return { scale, offset };
}

function cpeTrainCase(name: string, G: number, D: number, gridH: number, gridW: number, scale: number[], offset: number[], keep: number[]): Case {
  const B = keep.length;
  const geo: RefGeometry = { layout: 'NLC', mode: 'grid', alignCorners: true, batch: B, channels: D, inH: G, inW: G, outH: gridH, outW: gridW, scale, offset, keep };
  return {
    name: `cpeTrain ${name} G${G} D${D} B${B} -> ${gridH}x${gridW}`,
    shape: [1, G * G, D],
    run: (x) => ops.cpeTrain(x, {
      gridH, gridW,
      scale: tensor(scale, [B, 2], { device: x.device }),
      offset: tensor(offset, [B, 2], { device: x.device }),
      keep: tensor(keep, [B], { device: x.device }),
    }),
    ref: (x) => refForward(geo, x),
  };
}

const crops = radioCrops(3, 1234);
const CASES: Case[] = [
  resizeCase('NCHW', 'bilinear', false, [1, 3, 5, 7], [9, 4]),
  resizeCase('NCHW', 'bilinear', true, [1, 3, 5, 7], [9, 4]),
  resizeCase('NCHW', 'bilinear', false, [2, 2, 8, 8], [3, 5]),
  resizeCase('NCHW', 'bilinear', true, [2, 2, 8, 8], [3, 5]),
  resizeCase('NCHW', 'bilinear', false, [1, 1, 1, 1], [1, 1]),
  resizeCase('NCHW', 'bilinear', true, [1, 2, 1, 9], [4, 1]),
  resizeCase('NCHW', 'bilinear', false, [1, 1, 6, 1], [1, 13]),
  resizeCase('NLC', 'bilinear', false, [1, 6, 5, 7], [3, 9]),
  resizeCase('NLC', 'bilinear', true, [2, 8, 3, 3], [7, 7]),
  resizeCase('NLC', 'bilinear', false, [1, 12, 4, 4], [2, 3]),
  resizeCase('NLC', 'bilinear', false, [1, 8, 13, 11], [6, 7]),
  resizeCase('NLC', 'bilinear', true, [1, 3, 1, 5], [2, 8]),
  resizeCase('NCHW', 'nearest', false, [1, 3, 5, 7], [8, 11]),
  resizeCase('NCHW', 'nearest', false, [1, 2, 7, 9], [3, 4]),
  resizeCase('NLC', 'nearest', false, [2, 5, 4, 6], [8, 9]),
  resizeCase('NLC', 'nearest', false, [1, 1, 26, 3], [22, 3]),
  // Bicubic (upsample_bicubic2d): up, down, mixed, single rows and columns, both layouts.
  resizeCase('NCHW', 'bicubic', false, [1, 3, 5, 7], [9, 4]),
  resizeCase('NCHW', 'bicubic', true, [1, 3, 5, 7], [9, 4]),
  resizeCase('NCHW', 'bicubic', false, [2, 2, 13, 11], [5, 6]),
  resizeCase('NCHW', 'bicubic', true, [1, 2, 1, 9], [4, 1]),
  resizeCase('NCHW', 'bicubic', false, [1, 1, 6, 1], [1, 13]),
  resizeCase('NLC', 'bicubic', false, [1, 6, 5, 7], [3, 9]),
  resizeCase('NLC', 'bicubic', true, [2, 8, 3, 3], [7, 7]),
  resizeCase('NLC', 'bicubic', false, [1, 12, 13, 11], [4, 3]),
  // Antialias: downsampling windows as wide as the ratio, upsampling (where bicubic's a = −0.5 still differs).
  resizeSpecCase('NCHW', [1, 2, 17, 13], { mode: 'bicubic', antialias: true, size: [5, 6] }),
  resizeSpecCase('NCHW', [1, 2, 4, 5], { mode: 'bicubic', antialias: true, size: [9, 7] }),
  resizeSpecCase('NCHW', [1, 2, 16, 12], { mode: 'bicubic', antialias: true, alignCorners: true, size: [5, 5] }),
  resizeSpecCase('NLC', [1, 8, 19, 7], { mode: 'bicubic', antialias: true, size: [4, 9] }),
  resizeSpecCase('NCHW', [1, 3, 15, 10], { mode: 'bilinear', antialias: true, size: [4, 7] }),
  resizeSpecCase('NCHW', [1, 2, 5, 4], { mode: 'bilinear', antialias: true, size: [8, 9] }),
  resizeSpecCase('NLC', [2, 4, 11, 9], { mode: 'bilinear', antialias: true, alignCorners: true, size: [3, 4] }),
  // scaleFactor: the ratio 1/s, which differs from in/out whenever in·s is not an integer.
  resizeSpecCase('NCHW', [1, 2, 7, 9], { mode: 'bicubic', scaleFactor: [1.7, 0.6] }),
  resizeSpecCase('NLC', [1, 8, 5, 4], { mode: 'bicubic', scaleFactor: [1.3, 2.2] }),
  resizeSpecCase('NCHW', [1, 2, 13, 11], { mode: 'bicubic', antialias: true, scaleFactor: [0.4, 0.55] }),
  resizeSpecCase('NCHW', [1, 2, 6, 17], { mode: 'bilinear', scaleFactor: [2.5, 0.35] }),
  resizeSpecCase('NLC', [1, 3, 5, 6], { mode: 'bilinear', alignCorners: true, scaleFactor: [1.5, 2.5] }),
  resizeSpecCase('NCHW', [1, 3, 7, 9], { mode: 'nearest', scaleFactor: [1.5, 0.75] }),
  cpeCase(6, 8, 4, 9, false),
  cpeCase(6, 8, 9, 4, true),
  cpeCase(6, 8, 6, 5, false),
  cpeCase(6, 3, 2, 2, true),
  cpeCase(6, 8, 6, 6, false),
  cpeCase(1, 4, 3, 2, false),
  cpeTrainCase('radio crops', 7, 8, 5, 6, crops.scale, crops.offset, [1, 0, 1]),
  cpeTrainCase('outside the map', 5, 3, 4, 4, [1.3, 0.8, -0.5, 1.2], [-0.2, 0.1, 0.9, -0.15], [1, 1]),
  cpeTrainCase('1x1 grid', 4, 4, 1, 1, [0.5, 0.5], [0.3, 0.6], [1]),
];

describeEachDevice('interpolation ops on %s against float64', (device) => {
  describe.each(DTYPES)('%s', (dtype) => {
    test.each(CASES.map((c) => [c.name, c] as const))('%s: output and gradient', async (_, c) => {
      const x0 = quantize(randomArray(numel(c.shape), freshSeed()), dtype);
      const ref = c.ref(x0);
      const w0 = quantize(randomArray(ref.length, freshSeed()), dtype);
      const x = tensor(Float32Array.from(x0), c.shape, { device, dtype, requiresGrad: true });
      const r = await runWithGrad(x, c.run, w0);
      expect(r.dtype).toBe(dtype);
      expect(relativeError(r.out, ref)).toBeLessThanOrEqual(TOL[dtype]);
      // The ops are linear in x, so central differences of the reference are exact up to rounding.
      const gradRef = finiteDifferenceGrad((v) => weightedSum(c.ref(v), w0), x0, 1e-3);
      // Each input's gradient sums the output weights it sampled; with random signs that sum can cancel (a 1-wide
      // row upsampled to 13 sums 13 weights of both signs), and the f32 sum's rounding is relative to its terms,
      // not to the result. The bound scales by that cancellation: the same gradient with |w| over the result.
      const gradAbs = finiteDifferenceGrad((v) => weightedSum(c.ref(v), w0.map(Math.abs)), x0.map(Math.abs), 1e-3);
      const cancellation = Math.max(1, Math.hypot(...gradAbs) / Math.max(Math.hypot(...gradRef), 1e-300));
      expect(relativeError(r.grad, gradRef)).toBeLessThanOrEqual(TOL[dtype] * cancellation);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// PyTorch fixtures (scripts/fixtures/make_interpolate_fixtures.py).

interface Fixture {
  op: 'interpolate' | 'cpe' | 'cpeTrain';
  name: string;
  shape: number[];
  x: number[];
  opts: Record<string, unknown>;
  outShape: number[];
  out: number[];
  weight: number[];
  grad: number[];
  scale?: number[];
  offset?: number[];
  keep?: number[];
}

const FIXTURES: Fixture[] = ['resize', 'cpe', 'cpe_train', 'bicubic'].flatMap(
  (f) => JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'interpolate', `${f}.json`), 'utf8')).cases,
);

function applyFixture(f: Fixture, x: Tensor): Tensor {
  if (f.op === 'interpolate') return ops.interpolate(x, f.opts as unknown as InterpolateOptions);
  const opts = f.opts as { gridH: number; gridW: number; alignCorners?: boolean };
  if (f.op === 'cpe') return ops.cpe(x, opts);
  const B = f.keep!.length;
  const device = x.device;
  return ops.cpeTrain(x, {
    ...opts,
    scale: tensor(f.scale!, [B, 2], { device }),
    offset: tensor(f.offset!, [B, 2], { device }),
    keep: tensor(f.keep!, [B], { device }),
  });
}

describeEachDevice('PyTorch fixtures on %s', (device) => {
  describe.each(DTYPES)('%s', (dtype) => {
    test.each(FIXTURES.map((f) => [f.name, f] as const))('%s', async (_, f) => {
      const x = tensor(Float32Array.from(f.x), f.shape, { device, dtype, requiresGrad: true });
      const r = await runWithGrad(x, (t) => applyFixture(f, t), f.weight);
      expect(r.shape).toEqual(f.outShape);
      // Nearest copies values: the same float32 bits as PyTorch, index rounding included.
      if (dtype === 'f32' && f.opts.mode === 'nearest') expect(Array.from(r.out)).toEqual(f.out.map(Math.fround));
      expect(relativeError(r.out, f.out)).toBeLessThanOrEqual(TOL[dtype]);
      expect(relativeError(r.grad, f.grad)).toBeLessThanOrEqual(TOL[dtype]);
    });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Properties.

describeEachDevice('interpolation properties on %s', (device) => {
  test.each([false, true])('cpe equals resize to the max side then crop (alignCorners %s), to the bit', async (alignCorners) => {
    const G = 7, D = 9;
    const pe = randn([1, G * G, D], { seed: freshSeed(), device });
    for (const [gh, gw] of [[5, 9], [9, 5], [3, 3], [7, 4], [11, 2]]) {
      const m = Math.max(gh, gw);
      const one = await ops.cpe(pe, { gridH: gh, gridW: gw, alignCorners }).toArray();
      const full = await ops.interpolate(pe, { size: [m, m], layout: 'NLC', grid: [G, G], alignCorners }).toArray();
      expect(Array.from(one)).toEqual(Array.from(cropTokens(full, m, D, gh, gw)));
    }
  });

  test('cpe at the full grid returns posEmbed unchanged, and passes the gradient through', async () => {
    const pe = randn([1, 25, 6], { seed: freshSeed(), device, requiresGrad: true });
    const w = randomArray(150, freshSeed());
    const r = await runWithGrad(pe, (x) => ops.cpe(x, { gridH: 5, gridW: 5 }), w);
    expect(Array.from(r.out)).toEqual(Array.from(await pe.toArray()));
    expect(Array.from(r.grad)).toEqual(Array.from(Float32Array.from(w)));
  });

  test('cpeTrain with scale 1 and offset 0 is the identity crop; keep = 0 zeroes the sample', async () => {
    const G = 9, D = 5;
    const pe = randn([1, G * G, D], { seed: freshSeed(), device });
    const out = ops.cpeTrain(pe, {
      gridH: G, gridW: G,
      scale: tensor([1, 1, 1, 1, 1, 1], [3, 2], { device }),
      offset: zeros([3, 2], { device }),
      keep: tensor([1, 0, 1], [3], { device }),
    });
    expect(out.shape).toEqual([3, G * G, D]);
    const v = await out.toArray();
    const p = await pe.toArray();
    const n = G * G * D;
    expect(relativeError(v.subarray(0, n), p)).toBeLessThanOrEqual(1e-6);
    expect(Array.from(v.subarray(n, 2 * n)).every((e) => e === 0)).toBe(true);
    expect(relativeError(v.subarray(2 * n), p)).toBeLessThanOrEqual(1e-6);
  });

  test('antialias: bilinear upsampling is plain bilinear, bicubic upsampling is not (its filter has a = -0.5)', async () => {
    const x = randn([1, 3, 6, 5], { seed: freshSeed(), device });
    const up = (mode: 'bilinear' | 'bicubic', antialias: boolean) => ops.interpolate(x, { size: [11, 13], mode, antialias }).toArray();
    const [bl, blAa, bc, bcAa] = await Promise.all([up('bilinear', false), up('bilinear', true), up('bicubic', false), up('bicubic', true)]);
    expect(relativeError(blAa, bl)).toBeLessThanOrEqual(1e-6);
    expect(relativeError(bcAa, bc)).toBeGreaterThan(1e-2);
  });

  test('a scale factor whose size is an integer ratio gives the same result as that size', async () => {
    const x = randn([1, 2, 6, 10], { seed: freshSeed(), device });
    for (const [mode, antialias] of [['bicubic', false], ['bicubic', true], ['bilinear', true], ['nearest', false]] as const) {
      const bySize = await ops.interpolate(x, { size: [15, 4], mode, antialias }).toArray();
      const byFactor = await ops.interpolate(x, { scaleFactor: [2.5, 0.4], mode, antialias }).toArray();
      expect(relativeError(byFactor, bySize)).toBeLessThanOrEqual(1e-6);
    }
  });

  // The backward is the forward's transpose: <f(x), w> = <x, f^T(w)>, here at the teachers' shapes, too large for
  // finite differences of the reference.
  test.each([
    ['NLC', 'bicubic', false, 16, 37], ['NLC', 'bicubic', true, 37, 16], ['NCHW', 'bicubic', false, 37, 16],
    ['NCHW', 'bilinear', true, 37, 11], ['NCHW', 'bicubic', true, 11, 24],
  ] as const)('%s %s antialias %s %i² -> %i²: the backward is the adjoint of the forward', async (layout, mode, antialias, from, to) => {
    const C = 6;
    const shape = layout === 'NLC' ? [2, from * from, C] : [2, C, from, from];
    const x = randn(shape, { seed: freshSeed(), device, requiresGrad: true });
    const w0 = randomArray(2 * to * to * C, freshSeed());
    const grid = layout === 'NLC' ? { grid: [from, from] as [number, number] } : {};
    const r = await runWithGrad(x, (t) => ops.interpolate(t, { size: [to, to], mode, antialias, layout, ...grid }), w0);
    const lhs = weightedSum(r.out, Float32Array.from(w0));
    const rhs = weightedSum(await x.toArray(), r.grad);
    expect(Math.abs(lhs - rhs) / Math.sqrt(weightedSum(r.out, r.out) * weightedSum(w0, w0))).toBeLessThanOrEqual(1e-6);
  });

  test('backward is deterministic: the same bits every run', async () => {
    const B = 8, G = 16, D = 16;
    const { scale, offset } = radioCrops(B, freshSeed());
    const crop = {
      gridH: 12, gridW: 10,
      scale: tensor(scale, [B, 2], { device }), offset: tensor(offset, [B, 2], { device }), keep: tensor([1, 1, 0, 1, 1, 1, 1, 1], [B], { device }),
    };
    const pe = randn([1, G * G, D], { seed: freshSeed(), device, requiresGrad: true });
    const feats = randn([2, 5 * 5, 8], { seed: freshSeed(), device, requiresGrad: true });
    const nchw = randn([1, 3, 5, 6], { seed: freshSeed(), device, requiresGrad: true });
    const cubic = randn([1, 37 * 37, 8], { seed: freshSeed(), device, requiresGrad: true });
    const grads: number[][][] = [];
    for (let run = 0; run < 3; run++) {
      for (const t of [pe, feats, nchw, cubic]) t.zeroGrad();
      const w = (n: number) => tensor(Float32Array.from(randomArray(n, 99)), [n], { device });
      ops.cpeTrain(pe, crop).reshape([B * 120 * D]).mul(w(B * 120 * D)).sum().backward();
      ops.interpolate(feats, { size: [17, 13], layout: 'NLC', grid: [5, 5] }).reshape([2 * 221 * 8]).mul(w(2 * 221 * 8)).sum().backward();
      ops.interpolate(nchw, { size: [23, 7], alignCorners: true }).reshape([3 * 161]).mul(w(3 * 161)).sum().backward();
      ops.interpolate(cubic, { size: [16, 16], mode: 'bicubic', antialias: true, layout: 'NLC', grid: [37, 37] }).reshape([256 * 8]).mul(w(256 * 8)).sum().backward();
      grads.push(await Promise.all([pe, feats, nchw, cubic].map(async (t) => Array.from(await t.grad!.toArray()))));
    }
    expect(grads[1]).toEqual(grads[0]);
    expect(grads[2]).toEqual(grads[0]);
  });
});

describeEachDevice('%s agrees with cpu on RADIO-shaped maps', (device) => {
  // Bilinear tokens as RADIO resizes them, and the teachers' position embeddings: DINOv2 / CLIP / SigLIP resize
  // theirs bicubically, DINOv2 with registers antialiased too (37² from 16², 16² from 37²), on both layouts.
  const C = 24;
  test.each([
    [27, 16, 'bilinear', false, 'NLC'], [16, 27, 'bilinear', false, 'NLC'], [32, 13, 'bilinear', false, 'NLC'],
    [16, 37, 'bicubic', false, 'NLC'], [37, 16, 'bicubic', false, 'NCHW'], [16, 37, 'bicubic', true, 'NCHW'],
    [37, 16, 'bicubic', true, 'NLC'], [37, 14, 'bilinear', true, 'NLC'],
  ] as const)('%i² -> %i² %s antialias %s %s, forward and backward within 1e-5', async (from, to, mode, antialias, layout) => {
    const x0 = randomArray(2 * from * from * C, freshSeed());
    const w0 = randomArray(2 * to * to * C, freshSeed());
    const run = (dev: Device) => {
      const shape = layout === 'NLC' ? [2, from * from, C] : [2, C, from, from];
      const x = tensor(Float32Array.from(x0), shape, { device: dev, requiresGrad: true });
      const grid = layout === 'NLC' ? { grid: [from, from] as [number, number] } : {};
      return runWithGrad(x, (t) => ops.interpolate(t, { size: [to, to], mode, antialias, layout, ...grid }), w0);
    };
    const [a, b] = await Promise.all([run(device), run('cpu')]);
    expect(relativeError(a.out, b.out)).toBeLessThanOrEqual(1e-5);
    expect(relativeError(a.grad, b.grad)).toBeLessThanOrEqual(1e-5);
  });
}, (d) => d !== 'cpu');

// ---------------------------------------------------------------------------------------------------------------
// Bad input.

describe('interpolation errors', () => {
  const x = zeros([1, 2, 3, 4]);
  const tokens = zeros([1, 12, 3]);
  const pe = zeros([1, 16, 3]);
  const crop = (B = 2) => ({ gridH: 2, gridW: 2, scale: zeros([B, 2]), offset: zeros([B, 2]), keep: zeros([B]) });

  test('interpolate: size, mode, layout, grid and rank', () => {
    expect(() => ops.interpolate(x, { size: [0, 3] })).toThrow('interpolate: size[0] must be a positive integer, got 0');
    expect(() => ops.interpolate(x, { size: [3, -1] })).toThrow('interpolate: size[1] must be a positive integer, got -1');
    expect(() => ops.interpolate(x, { size: [2.5, 3] })).toThrow(/size\[0\] must be a positive integer/);
    expect(() => ops.interpolate(x, { size: [3] as never })).toThrow(/size must be \[height, width\]/);
    expect(() => ops.interpolate(x, undefined as never)).toThrow(/options \{ size \} are required/);
    expect(() => ops.interpolate(x, { size: [3, 3], mode: 'trilinear' as never })).toThrow('interpolate: unknown mode "trilinear" (expected bilinear, nearest or bicubic)');
    expect(() => ops.interpolate(x, { size: [3, 3], layout: 'NHWC' as never })).toThrow(/unknown layout "NHWC"/);
    expect(() => ops.interpolate(x, { size: [3, 3], mode: 'nearest', alignCorners: true })).toThrow('interpolate: alignCorners applies only to bilinear and bicubic modes');
    expect(() => ops.interpolate(tokens, { size: [3, 3] })).toThrow('interpolate: layout NCHW needs a rank-4 tensor [N, C, H, W], got [1, 12, 3]');
    expect(() => ops.interpolate(x, { size: [3, 3], layout: 'NLC', grid: [3, 4] })).toThrow(/layout NLC needs a rank-3 tensor \[B, H\*W, C\]/);
    expect(() => ops.interpolate(x, { size: [3, 3], grid: [3, 4] })).toThrow(/grid is only for layout NLC/);
    expect(() => ops.interpolate(tokens, { size: [3, 3], layout: 'NLC' })).toThrow(/layout NLC needs grid = \[H, W\]/);
    expect(() => ops.interpolate(tokens, { size: [3, 3], layout: 'NLC', grid: [3, 5] })).toThrow(
      'interpolate: grid [3, 5] does not match the token count 12 of [1, 12, 3]',
    );
    expect(() => ops.interpolate(zeros([1, 0, 3, 4]), { size: [3, 3] })).toThrow(/has no elements/);
    expect(() => ops.interpolate(zeros([1, 2, 3, 4], { dtype: 'i32' }), { size: [3, 3] })).toThrow(/i32 tensors are not supported/);
  });

  test('interpolate: antialias and scaleFactor', () => {
    expect(() => ops.interpolate(x, { size: [3, 3], mode: 'nearest', antialias: true })).toThrow('interpolate: antialias applies only to bilinear and bicubic modes');
    expect(() => ops.interpolate(x, { size: [3, 3], mode: 'bicubic', antialias: 1 as never })).toThrow('interpolate: antialias must be a boolean, got 1');
    expect(() => ops.interpolate(x, { size: [3, 3], scaleFactor: [2, 2] })).toThrow('interpolate: give size or scaleFactor, not both');
    expect(() => ops.interpolate(x, {} as never)).toThrow('interpolate: options { size } are required (or { scaleFactor })');
    expect(() => ops.interpolate(x, { scaleFactor: [2] as never })).toThrow('interpolate: scaleFactor must be [sh, sw], got [2]');
    expect(() => ops.interpolate(x, { scaleFactor: [0, 2] })).toThrow('interpolate: scaleFactor[0] must be a finite number > 0, got 0');
    expect(() => ops.interpolate(x, { scaleFactor: [2, NaN] })).toThrow('interpolate: scaleFactor[1] must be a finite number > 0, got NaN');
    expect(() => ops.interpolate(x, { scaleFactor: [0.2, 1], mode: 'bicubic' })).toThrow('interpolate: scaleFactor [0.2, 1] gives an output of 0x4 from 3x4');
    expect(ops.interpolate(x, { scaleFactor: [1.5, 0.6], mode: 'bicubic', antialias: true }).shape).toEqual([1, 2, 4, 2]);
    expect(ops.interpolate(tokens, { scaleFactor: [2, 1.5], layout: 'NLC', grid: [3, 4] }).shape).toEqual([1, 36, 3]);
  });

  test('cpe and cpeTrain: posEmbed shape, grid, and the crop tensors', () => {
    expect(() => ops.cpe(zeros([2, 16, 3]), { gridH: 2, gridW: 2 })).toThrow('cpe: posEmbed must have shape [1, G*G, D], got [2, 16, 3]');
    expect(() => ops.cpe(zeros([1, 15, 3]), { gridH: 2, gridW: 2 })).toThrow('cpe: posEmbed has 15 positions, not a square grid G*G');
    expect(() => ops.cpe(pe, { gridH: 0, gridW: 2 })).toThrow('cpe: gridH must be a positive integer, got 0');
    expect(() => ops.cpeTrain(pe, { ...crop(), gridW: -2 })).toThrow('cpeTrain: gridW must be a positive integer, got -2');
    expect(() => ops.cpeTrain(pe, { ...crop(), scale: zeros([2, 2], { dtype: 'bf16' }) })).toThrow('cpeTrain: scale must be an f32 tensor, got bf16');
    expect(() => ops.cpeTrain(pe, { ...crop(), offset: zeros([2, 3]) })).toThrow('cpeTrain: offset must have shape [2, 2], got [2, 3]');
    expect(() => ops.cpeTrain(pe, { ...crop(), keep: zeros([2], { dtype: 'i32' }) })).toThrow('cpeTrain: keep must be an f32 tensor, got i32');
    expect(() => ops.cpeTrain(pe, { ...crop(), keep: zeros([3]) })).toThrow('cpeTrain: keep must have shape [2], got [3]');
    expect(() => ops.cpeTrain(pe, { ...crop(), scale: zeros([2]) })).toThrow(/scale must be a Tensor \[B, 2\]/);
    expect(() => ops.cpeTrain(pe, { ...crop(), keep: [1, 1] as never })).toThrow(/keep must be a Tensor \[2\]/);
    const other = testDevices().find((d) => d !== 'cpu');
    if (other) expect(() => ops.cpeTrain(pe, { ...crop(), keep: zeros([2], { device: other }) })).toThrow(`cpeTrain: keep is on ${other}, posEmbed on cpu`);
  });

  test('the native layer checks buffer sizes itself', () => {
    const geometry = { layout: 'NCHW', mode: 'bilinear', alignCorners: false, batch: 1, channels: 2, inH: 3, inW: 4, outH: 5, outW: 5, virtH: 5, virtW: 5 } as const;
    const small = zeros([10]);
    expect(() => native.interpolate({ out: small.native('t'), x: x.native('t'), dtype: 'f32', geometry })).toThrow('interpolate: output holds 40 bytes, fewer than 50 f32 elements');
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: small.native('t'), dtype: 'f32', geometry: { ...geometry, inH: 30 } })).toThrow(/input holds/);
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'gridSample' } })).toThrow(
      /scale, offset and keep are given exactly for mode gridSample/,
    );
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, virtH: 4 } })).toThrow(/must fit in the resized map/);
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'area' as never } }))
      .toThrow("interpolate geometry: mode must be one of 'bilinear', 'nearest', 'gridSample', 'bicubic', got 'area'");
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'nearest', antialias: true } }))
      .toThrow('interpolate geometry: antialias applies only to modes bilinear and bicubic');
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'bicubic', factorH: -1 } }))
      .toThrow('interpolate geometry: factorH must be a number > 0');
    expect(() => native.interpolateBackward({ gradIn: x.native('t'), gradOut: zeros([50]).native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'bicubic', antialias: true, factorW: Infinity } }))
      .toThrow('interpolate backward geometry: factorW must be a finite number');
    expect(() => native.interpolate({ out: small.native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, mode: 'bicubic', antialias: true } }))
      .toThrow('interpolate: output holds 40 bytes, fewer than 50 f32 elements');
    expect(() => native.interpolate({ out: zeros([50]).native('t'), x: x.native('t'), dtype: 'f32', geometry: { ...geometry, outW: 0 } }))
      .toThrow('interpolate geometry: outW must be an integer in [1, ');
  });
});
