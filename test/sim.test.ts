// The GPU emulator's self-test kernels (test/native/selftest.cu, in the test-only addon am_radio_selftest.node) against
// float64 and PTX-rule references, with fresh random inputs each run. They all run on sim. The ones whose
// results the hardware defines (block sums, GEMM, rounding, votes and shuffles, cp.async, ldmatrix and mma
// fragment layouts) also run on cuda when a GPU is here: that is what checks sim's rules against the hardware.
// Sim only: what only sim defines (missing barriers always caught, seeded schedules, poisoned shared memory,
// errors for broken kernels, and the emulator's own rules).
import type { Device } from '../ts';
import { freshSeed, rng } from './support/reference';
import { selftestAddon, selftestUnbuilt } from './support/selftestAddon';
import type { SelftestAddon } from './support/selftestAddon';
import {
  BF16, F16, bitsBuffer, bitsOfF32, decodeBf16, decodeF16, f32Buffer, filledF32, randomBits, readF32, readI32,
  readU16, readU32, referenceRound, worstOf,
} from './support/simSelftest';

// Every call goes to the test-only addon (its own buffers and backends); the tests are skipped where it is not built.
const addon = selftestAddon as SelftestAddon;
const listed = selftestAddon ? selftestAddon.backends() : [];
const gpu = listed.some((b) => b.name === 'cuda' && b.available);
const sim = listed.some((b) => b.name === 'sim' && b.available);
const selftests = selftestAddon !== null;
const unbuilt = !selftests ? `skipped: ${selftestUnbuilt}` : !sim ? 'skipped: addon built without sim' : '';
const targets: Array<[Device, boolean, string]> = [
  ['sim', selftests && sim, unbuilt],
  ['cuda', selftests && gpu, unbuilt || 'skipped: no GPU'],
];
const randomF32 = (n: number, r: () => number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());

/** expect(value <= limit), showing the seed of the random inputs when it fails (NaN fails). */
function expectAtMost(value: number, limit: number, seed: number): void {
  expect({ seed, value: value <= limit ? `<= ${limit}` : value }).toEqual({ seed, value: `<= ${limit}` });
}

/** Checks that the next launch on device works (after an error): 1000 ones sum to 1000. */
async function expectNextLaunchWorks(device: Device): Promise<void> {
  const sums = f32Buffer(device, filledF32(2, NaN));
  addon.selftestBlockSum(f32Buffer(device, filledF32(1000, 1)), 1000, sums, 2, 64);
  const s = await readF32(sums, 2);
  expect(s[0] + s[1]).toBe(1000);
}

/** Runs gemm_bf16 on random bf16 inputs: ‖C − AB‖ / ‖AB‖ against float64 (B is [K,N] when kn, else [N,K]). */
async function gemmError(device: Device, m: number, n: number, k: number, kn: boolean): Promise<[number, number]> {
  const seed = freshSeed();
  const r = rng(seed);
  const a = randomBits(m * k, r, BF16);
  const b = randomBits(n * k, r, BF16);
  const c = f32Buffer(device, filledF32(m * n, NaN));
  addon.selftestGemmBf16(bitsBuffer(device, a), bitsBuffer(device, b), c, m, n, k, kn);
  const got = await readF32(c, m * n);
  const ad = Float64Array.from(a, decodeBf16);
  const bd = Float64Array.from(b, decodeBf16);
  let err = 0;
  let ref2 = 0;
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let ref = 0;
      for (let p = 0; p < k; p++) ref += ad[i * k + p] * bd[kn ? p * n + j : j * k + p];
      err += (got[i * n + j] - ref) ** 2;
      ref2 += ref * ref;
    }
  return [Math.sqrt(err / Math.max(ref2, 1e-300)), seed];
}

const GEMM_SHAPES = (kn: boolean): Array<[number, number, number]> =>
  [[1, 8, 8], [17, 24, 40], [64, 64, 32], [100, 72, 136], [129, kn ? 72 : 65, 264], [33, 200, 0], [256, 256, 256]];

// Rounding edge cases as float32 bit patterns, plus the bf16 overflow boundary (largest finite
// bf16, just below and at the midpoint to inf) and NaNs of either sign (bits, since JS numbers lose NaN signs).
const ROUNDING_CASES = Uint32Array.from([
  ...[0, -0, 1, -1, 3.14159265, 1 + 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 1 + 3 * 2 ** -8, 65504, 65519, 65520, 1e5, 2 ** -14, 2 ** -24,
    2 ** -25, 1.5 * 2 ** -25, 2 ** -126, 2 ** -130, 2 ** -149, 3.3895e38, 3.4e38, Infinity, -Infinity, 1e-3, -7.25e-6, 2049, 2051,
  ].map(bitsOfF32),
  0x7f7f0000, 0x7f7f7fff, 0x7f7f8000, 0xff7f7fff, 0x7fc00000, 0xffc00000, 0x7f800001,
]);

for (const [device, here, why] of targets) {
  const it = here ? test : test.skip;
  describe(here ? `self-tests on ${device}` : `self-tests on ${device} (${why})`, () => {
    it.each([[1, 1, 32], [1000, 3, 64], [4097, 5, 256], [100000, 7, 1024]])('block_sum n=%i blocks=%i threads=%i', async (n, blocks, threads) => {
      const seed = freshSeed();
      const x = randomF32(n, rng(seed));
      const sums = f32Buffer(device, filledF32(blocks, NaN));
      addon.selftestBlockSum(f32Buffer(device, x), n, sums, blocks, threads);
      const got = await readF32(sums, blocks);
      let worst = 0;
      for (let b = 0; b < blocks; b++) {
        let ref = 0;
        let mag = 0;
        for (let i = b * threads; i < n; i += blocks * threads)
          for (let t = 0; t < threads && i + t < n; t++) (ref += x[i + t]), (mag += Math.abs(x[i + t]));
        worst = worstOf(worst, Math.abs(got[b] - ref) / Math.max(mag, 1e-30));
      }
      expectAtMost(worst, 1e-6, seed);
    });

    it('block_sum of 2^20 floats (1024 blocks x 256 threads)', async () => {
      const x = randomF32(1 << 20, rng(freshSeed()));
      const sums = f32Buffer(device, filledF32(1024, NaN));
      addon.selftestBlockSum(f32Buffer(device, x), x.length, sums, 1024, 256);
      const total = (await readF32(sums, 1024)).reduce((s, v) => s + v, 0);
      expect(Math.abs(total - x.reduce((s, v) => s + v, 0))).toBeLessThan(1e-2);
    });

    it('neighbor_exchange with __syncthreads is exact', async () => {
      const [blocks, threads] = [6, 96];
      const input = Float32Array.from({ length: blocks * threads }, (_, i) => i + 0.5);
      const out = f32Buffer(device, filledF32(input.length, NaN));
      addon.selftestNeighborExchange(f32Buffer(device, input), out, blocks, threads, true);
      const expected = input.map((_, i) => input[i - (i % threads) + (((i % threads) + 1) % threads)]);
      expect(Array.from(await readF32(out, input.length))).toEqual(Array.from(expected));
    });

    describe.each([['C = A B^T (B is [N,K])', false], ['C = A B (B is [K,N])', true]] as const)('gemm_bf16 %s', (_label, kn) => {
      it.each(GEMM_SHAPES(kn))('M=%i N=%i K=%i', async (m, n, k) => {
        const [rel, seed] = await gemmError(device, m, n, k, kn);
        expectAtMost(rel, 1e-5, seed);
      });
    });

    it('gemm_bf16 rejects K % 8 != 0, and the backend keeps working', async () => {
      const c = f32Buffer(device, filledF32(64, 0));
      addon.selftestGemmBf16(bitsBuffer(device, new Uint16Array(96)), bitsBuffer(device, new Uint16Array(96)), c, 8, 8, 12, false);
      await expect(readF32(c, 64)).rejects.toThrow('selftest gemm_bf16: gemm_bf16: K must be a multiple of 8');
      await expectNextLaunchWorks(device);
    });

    it('float -> bf16 / f16 round-to-nearest-even (NaN -> 0x7fff), back to float, __floats2bfloat162_rn', async () => {
      const seed = freshSeed();
      const r = rng(seed);
      const random = Uint32Array.from({ length: 3000 }, () => Math.floor(r() * 2 ** 32));
      const input = new Float32Array(ROUNDING_CASES.length + random.length);
      new Uint32Array(input.buffer).set(ROUNDING_CASES);
      new Uint32Array(input.buffer).set(random, ROUNDING_CASES.length);
      const n = input.length;
      const [bb, bback, pair, hb, hback] = [2 * n, 4 * n, 8 * n, 2 * n, 4 * n].map((bytes) => addon.alloc(device, bytes));
      addon.selftestRoundTrip(f32Buffer(device, input), n, bb, bback, pair, hb, hback);
      const [gotBb, gotBback, gotPair, gotHb, gotHback] = [
        await readU16(bb, n), await readF32(bback, n), await readF32(pair, 2 * n), await readU16(hb, n), await readF32(hback, n),
      ];
      const same = (x: number, y: number) => (Number.isNaN(x) && Number.isNaN(y)) || x === y;
      const bad = { bf16: 0, f16: 0, back: 0 };
      for (let i = 0; i < n; i++) {
        const rb = referenceRound(input[i], BF16);
        const rh = referenceRound(input[i], F16);
        bad.bf16 += Number(gotBb[i] !== rb);
        bad.f16 += Number(gotHb[i] !== rh);
        const db = decodeBf16(rb);
        const dh = decodeF16(rh);
        bad.back += Number(!same(db, gotBback[i]) || !same(dh, gotHback[i]) || !same(db, gotPair[2 * i]) || !same(-db, gotPair[2 * i + 1]));
      }
      expect({ seed, bad }).toEqual({ seed, bad: { bf16: 0, f16: 0, back: 0 } });
    });

    it('warp_ops: votes, shuffles (widths, wrapping source lanes), __syncthreads_count', async () => {
      const [blocks, threads, outs] = [2, 128, 14]; // outs: kSelftestWarpOpsOutputs
      const seed = freshSeed();
      const r = rng(seed);
      const input = Int32Array.from({ length: blocks * threads }, (_, i) => {
        const w = i >> 5;
        if (w % 4 === 2 && i % 32 === 17) return 5000; // warps 2, 6: any(> 1000)
        if (w % 4 === 3 && i % 32 === 3) return -5000; // warps 3, 7: not all(> -1000)
        return Math.floor(r() * 200) - (w % 4 === 1 ? 100 : 0) + 1; // warps 1, 5: mixed signs
      });
      const out = bitsBuffer(device, new Int32Array(input.length * outs).fill(-7));
      addon.selftestWarpOps(bitsBuffer(device, input), out, blocks, threads);
      const got = await readI32(out, input.length * outs);
      const names = ['__ballot_sync', '__any_sync', '__all_sync', '__shfl_up_sync(1)', '__shfl_down_sync(3)', '__shfl_xor_sync(5)',
        '__shfl_sync(src wraps)', '__shfl_up_sync(2, width 8)', '__shfl_down_sync(1, width 16)', '__shfl_xor_sync(4, width 4)',
        '__shfl_sync(lane+3, width 8)', '__shfl_xor_sync(float)', '__ballot_sync(half-warp masks)', '__syncthreads_count'];
      const wrong: Record<string, number> = Object.fromEntries(names.map((k) => [k, 0]));
      for (let i = 0; i < input.length; i++) {
        const lane = i % 32;
        const v = (l: number) => input[i - lane + l];
        const b0 = i - (i % threads);
        let [ballot, half, any, all, count] = [0, 0, 0, 1, 0];
        for (let l = 0; l < 32; l++) {
          ballot |= Number(v(l) > 0) << l;
          any |= Number(v(l) > 1000);
          all &= Number(v(l) > -1000);
          if (l < 16 === lane < 16) half |= (v(l) & 1) << l;
        }
        for (let t = 0; t < threads; t++) count += Number(input[b0 + t] > 0);
        const [seg8, seg16, seg4] = [lane & ~7, lane & ~15, lane & ~3];
        const expected = [
          ballot, any, all, lane >= 1 ? v(lane - 1) : v(lane), lane + 3 <= 31 ? v(lane + 3) : v(lane), v(lane ^ 5),
          v(((lane * 7 + 37) % 64) & 31), lane - 2 >= seg8 ? v(lane - 2) : v(lane), lane + 1 <= seg16 + 15 ? v(lane + 1) : v(lane),
          (lane ^ 4) <= seg4 + 3 ? v(lane ^ 4) : v(lane), v(seg8 + ((lane + 3) & 7)), bitsOfF32(v(lane ^ 1) * 0.5), half, count,
        ];
        names.forEach((name, k) => (wrong[name] += Number(got[i * outs + k] !== (expected[k] | 0))));
      }
      expect({ seed, wrong }).toEqual({ seed, wrong: Object.fromEntries(names.map((k) => [k, 0])) });
    });

    it('cp.async: data lands at the wait that covers its group; zfill writes zeros', async () => {
      const input = randomF32(512, rng(freshSeed()), 1, 3);
      const out = f32Buffer(device, filledF32(5 * 64, 1));
      addon.selftestCpAsyncVisibility(f32Buffer(device, input), out);
      const o = await readF32(out, 5 * 64);
      let bad = 0; // o[5t + 1], o[5t + 3] and o[5t + 4] are what the hardware defines too
      for (let t = 0; t < 64; t++) bad += Number(o[5 * t + 1] !== input[4 * t] || o[5 * t + 3] !== input[256 + 4 * t] || o[5 * t + 4] !== 0);
      expect(bad).toBe(0);
    });

    it('ldmatrix x1/x2/x4 (.trans) fragment layouts', async () => {
      const regs = 14; // kSelftestLdmatrixRegs
      const out = bitsBuffer(device, new Uint32Array(32 * regs).fill(0xdeadbeef));
      addon.selftestLdmatrixLayouts(out);
      const got = await readU32(out, 32 * regs);
      // PTX ISA: lane l, register j holds (row l/4, cols 2(l%4), +1) of matrix j (transposed with .trans); row r of
      // matrix j starts at the address lane 8j + r gives. M[r][c] = 16r + c; the lanes' addresses are selftest.cu's.
      const rowStart = (num: number, lane: number): [number, number] =>
        num === 1 ? [lane, 0] : num === 2 ? [lane & 7, (lane >> 3) * 8] : [lane & 15, (lane >> 4) * 8];
      const nums = [1, 2, 4, 1, 2, 4];
      const firstReg = [0, 1, 3, 7, 8, 10];
      let bad = 0;
      for (let v = 0; v < 6; v++)
        for (let l = 0; l < 32; l++)
          for (let j = 0; j < nums[v]; j++) {
            let want = 0;
            for (let h = 0; h < 2; h++) {
              const [mrow, mcol] = v >= 3 ? [2 * (l % 4) + h, l >> 2] : [l >> 2, 2 * (l % 4) + h];
              const [r, c] = rowStart(nums[v], 8 * j + mrow);
              want += (16 * r + c + mcol) * 2 ** (16 * h);
            }
            bad += Number(got[l * regs + firstReg[v] + j] !== want);
          }
      expect(bad).toBe(0);
    });

    it.each([['mma.m16n8k16 bf16', 0], ['mma.m16n8k16 f16', 1], ['mma.m16n8k8 bf16', 2]])('%s fragment layouts and result', async (_name, v) => {
      const seed = freshSeed();
      const r = rng(seed);
      const [ab, bb] = [randomBits(256, r, BF16), randomBits(128, r, BF16)];
      const [ah, bh] = [randomBits(256, r, F16, -2, 2), randomBits(128, r, F16, -2, 2)];
      const c = randomF32(128, r, -2, 2);
      const d = f32Buffer(device, filledF32(384, NaN));
      addon.selftestMmaLayouts(bitsBuffer(device, ab), bitsBuffer(device, bb), bitsBuffer(device, ah), bitsBuffer(device, bh), f32Buffer(device, c), d);
      const got = await readF32(d, 384);
      let worst = 0;
      for (let m = 0; m < 16; m++)
        for (let n = 0; n < 8; n++) {
          let ref = c[m * 8 + n];
          let mag = Math.abs(ref);
          for (let k = 0; k < (v === 2 ? 8 : 16); k++) {
            const p = v === 1 ? decodeF16(ah[m * 16 + k]) * decodeF16(bh[k * 8 + n]) : decodeBf16(ab[m * 16 + k]) * decodeBf16(bb[k * 8 + n]);
            ref += p;
            mag += Math.abs(p);
          }
          worst = worstOf(worst, Math.abs(got[v * 128 + m * 8 + n] - ref) / mag);
        }
      expectAtMost(worst, 1e-6, seed);
    });
  });
}

(selftests && sim ? describe : describe.skip)(`sim only: what the emulator alone defines${selftests && sim ? '' : ` (${unbuilt})`}`, () => {
  const device = 'sim';
  let savedSeed = 0n;
  beforeAll(async () => {
    await expectNextLaunchWorks(device); // a launch reads AMR_SIM_SEED, so the seed saved here is the one in use
    savedSeed = addon.simSeed();
  });
  afterAll(() => addon.simSetSeed(savedSeed));

  const [blocks, threads] = [6, 96];
  const input = Float32Array.from({ length: blocks * threads }, (_, i) => i + 0.5);
  async function exchangeWithoutBarrier(seed: bigint): Promise<Float32Array> {
    addon.simSetSeed(seed);
    const out = f32Buffer(device, filledF32(input.length, 0));
    addon.selftestNeighborExchange(f32Buffer(device, input), out, blocks, threads, false);
    return readF32(out, input.length);
  }
  const randomSeed = () => ((BigInt(freshSeed()) << 32n) | BigInt(freshSeed())).toString();

  test.each(['1', '2', '3', '12345', '0xdeadbeef', randomSeed()])('missing __syncthreads makes every block wrong, seed %s', async (seed) => {
    const out = await exchangeWithoutBarrier(BigInt(seed));
    let caught = 0;
    for (let b = 0; b < blocks; b++) {
      let wrong = 0;
      for (let t = 0; t < threads; t++) wrong += Number(!(out[b * threads + t] === input[b * threads + ((t + 1) % threads)]));
      caught += Number(wrong > 0);
    }
    expect(caught).toBe(blocks);
  });

  test.each(['7', randomSeed()])('same seed, same schedule (seed %s)', async (seed) => {
    const first = new Uint32Array((await exchangeWithoutBarrier(BigInt(seed))).buffer);
    expect(new Uint32Array((await exchangeWithoutBarrier(BigInt(seed))).buffer)).toEqual(first);
  });

  test('partial __syncthreads stops with an error; the next launch works', async () => {
    const out = bitsBuffer(device, new Int32Array(64));
    addon.selftestPartialBarrier(out, 64);
    await expect(readI32(out, 64)).rejects.toThrow(
      /^selftest partial_barrier: kernel selftest_partial_barrier: __syncthreads not reached by all threads of block \(0,0,0\)/,
    );
    await expectNextLaunchWorks(device);
  });

  test('dynamic shared memory out of bounds stops with an error; the next launch works', async () => {
    const out = f32Buffer(device, filledF32(64, 0));
    addon.selftestDynamicSmemOob(out, 64);
    await expect(readF32(out, 64)).rejects.toThrow(
      /^selftest dynamic_smem_oob: kernel selftest_dynamic_smem_oob: dynamic shared memory access out of bounds.*thread \(63,0,0\)/,
    );
    await expectNextLaunchWorks(device);
  });

  test('the sim-only kernels are refused on other devices', () => {
    const cpuOut = addon.alloc('cpu', 256);
    expect(() => addon.selftestPartialBarrier(cpuOut, 64)).toThrow('selftest partial_barrier: runs on sim or cuda only');
    if (gpu) expect(() => addon.selftestDynamicSmemOob(addon.alloc('cuda', 256), 64)).toThrow(/sim only/);
  });

  test('cp.async data is invisible before its wait (NaN: shared memory starts poisoned)', async () => {
    const input = randomF32(512, rng(freshSeed()), 1, 3);
    const out = f32Buffer(device, filledF32(5 * 64, 1));
    addon.selftestCpAsyncVisibility(f32Buffer(device, input), out);
    const o = await readF32(out, 5 * 64);
    let bad = 0;
    for (let t = 0; t < 64; t++)
      bad += Number(!Number.isNaN(o[5 * t]) || o[5 * t + 1] !== input[4 * t] || !Number.isNaN(o[5 * t + 2]) ||
        o[5 * t + 3] !== input[256 + 4 * t] || o[5 * t + 4] !== 0);
    expect(bad).toBe(0);
  });

  test('AMR_SHARED and dynamic shared memory start as NaN in every block', async () => {
    const out = f32Buffer(device, filledF32(5 * 64 * 2, 0));
    addon.selftestSharedPoison(out, 5);
    expect((await readF32(out, 5 * 64 * 2)).filter((v) => !Number.isNaN(v)).length).toBe(0);
  });

  test('a shuffle from an exited lane gives NaN; votes count the live lanes', async () => {
    const out = f32Buffer(device, filledF32(64, 0));
    addon.selftestSimKernel('exited_lane', out);
    const f = await readF32(out, 64);
    for (let l = 0; l < 16; l++) expect([l, l < 8 ? f[l] === 1 && f[32 + l] === 1 : Number.isNaN(f[l])]).toEqual([l, true]);
  });

  test('mismatched warp collectives stop with an error', async () => {
    const out = bitsBuffer(device, new Int32Array(32));
    addon.selftestSimKernel('mismatch', out);
    await expect(readI32(out, 32)).rejects.toThrow(/^selftest sim kernel: kernel mismatch: .*not reached by all lanes of warp 0/);
    await expectNextLaunchWorks(device);
  });

  test('3-D grid and block indices cover every thread exactly once', async () => {
    const out = bitsBuffer(device, new Int32Array(12 * 64));
    addon.selftestSimKernel('index', out);
    expect(Array.from(await readI32(out, 12 * 64))).toEqual(new Array(12 * 64).fill(1));
  });

  test('an exception thrown in a kernel becomes a KernelError', async () => {
    const out = bitsBuffer(device, new Int32Array(64));
    addon.selftestSimKernel('thrower', out);
    await expect(readI32(out, 64)).rejects.toThrow(/^selftest sim kernel: kernel thrower: thrown from a kernel$/);
    await expectNextLaunchWorks(device);
  });

  test('__nanosleep lets a spin-wait on another thread\'s write finish', async () => {
    const out = bitsBuffer(device, new Int32Array(64));
    addon.selftestSimKernel('spin', out);
    expect(Array.from(await readI32(out, 64))).toEqual(new Array(64).fill(42));
  });

  test('a launch from inside a kernel is an error', async () => {
    const out = bitsBuffer(device, new Int32Array(1));
    addon.selftestSimKernel('nested', out);
    await expect(readI32(out, 1)).rejects.toThrow(/^selftest sim kernel: kernel inner: launched from inside a running sim kernel/);
    await expectNextLaunchWorks(device);
  });

  test('concurrent launches from two OS threads are serialized and both come out right', async () => {
    const [s1, s2] = [f32Buffer(device, filledF32(8, NaN)), f32Buffer(device, filledF32(8, NaN))];
    addon.selftestSimConcurrentLaunches(f32Buffer(device, filledF32(50000, 1)), 50000, s1, s2);
    const total = async (s: typeof s1) => (await readF32(s, 8)).reduce((a, b) => a + b, 0);
    expect([await total(s1), await total(s2)]).toEqual([50000, 50000]);
  });
});
