// The test-only addon am_radio_selftest.node (CMakeLists.txt, test/native/): every export of am_radio.node, compiled
// from the same objects, plus the GPU emulator's self-tests. Only test/sim.test.ts uses it, and it uses nothing
// else: its buffers and backends are its own (a buffer of am_radio.node must never reach it, nor the other way).
// The shipped addon has none of these, so the self-tests cannot reach a user.
import * as fs from 'fs';
import * as path from 'path';

import type { NativeAddon, NativeBuffer } from '../../ts/native';

/** The self-test entry points (test/native/selftest_ops.cpp): sim or cuda buffers; u16 arguments are raw bf16/f16 bits. */
export interface SelftestAddon extends NativeAddon {
  selftestBlockSum(x: NativeBuffer, n: number, blockSums: NativeBuffer, blocks: number, threads: number): void;
  selftestNeighborExchange(input: NativeBuffer, out: NativeBuffer, blocks: number, threads: number, useBarrier: boolean): void;
  selftestGemmBf16(a: NativeBuffer, b: NativeBuffer, c: NativeBuffer, m: number, n: number, k: number, bIsKN: boolean): void;
  selftestRoundTrip(input: NativeBuffer, n: number, bf16Bits: NativeBuffer, bf16Back: NativeBuffer, bf16Pair: NativeBuffer,
    f16Bits: NativeBuffer, f16Back: NativeBuffer): void;
  selftestWarpOps(input: NativeBuffer, out: NativeBuffer, blocks: number, threads: number): void;
  selftestPartialBarrier(out: NativeBuffer, threads: number): void;
  selftestDynamicSmemOob(out: NativeBuffer, threads: number): void;
  selftestCpAsyncVisibility(input: NativeBuffer, out: NativeBuffer): void;
  selftestSharedPoison(out: NativeBuffer, blocks: number): void;
  selftestLdmatrixLayouts(out: NativeBuffer): void;
  selftestMmaLayouts(aBf16: NativeBuffer, bBf16: NativeBuffer, aF16: NativeBuffer, bF16: NativeBuffer, c: NativeBuffer, d: NativeBuffer): void;
  /** Sim builds only, as the two below. */
  selftestSimKernel(name: 'exited_lane' | 'mismatch' | 'index' | 'thrower' | 'spin' | 'nested', out: NativeBuffer): void;
  selftestSimConcurrentLaunches(x: NativeBuffer, n: number, sums1: NativeBuffer, sums2: NativeBuffer): void;
}

/** Where the build writes it, next to am_radio.node. */
export const SELFTEST_ADDON = path.join(__dirname, '..', '..', 'build', 'Release', 'am_radio_selftest.node');

function load(): { addon: SelftestAddon | null; why: string } {
  if (!fs.existsSync(SELFTEST_ADDON))
    return { addon: null, why: `${path.relative(process.cwd(), SELFTEST_ADDON)} is not built (npm test builds it; am-radio build --self-tests)` };
  const addon = require(SELFTEST_ADDON) as SelftestAddon; // eslint-disable-line @typescript-eslint/no-require-imports
  // As ts/native.ts does for am_radio.node: stop this addon's backends once nothing queued can be observed.
  process.once('exit', () => addon.shutdownEnvironment());
  return { addon, why: '' };
}

const loaded = load();
/** null when the test addon is not built; `selftestUnbuilt` then says why. */
export const selftestAddon = loaded.addon;
export const selftestUnbuilt = loaded.why;
