// Switches for checking kernels, used by the test suite and useful when writing a new op.
import { Device, native } from './native';
import type { Tensor } from './tensor';

/** Fill every new allocation with 0xFF bytes (NaN in f32/bf16), so outputs a kernel forgets to write show up. */
export function poisonAllocations(on: boolean): void {
  native.setPoisonAllocations(on);
}

/** Queue work on a device that fails with message: the next read on that device rejects with it. */
export function queueFailure(device: Device, message: string): void {
  native.queueFailure(device, message);
}

/** The host BLAS the cpu backend's GEMM can use after useCpuBlas(true) (OpenBLAS, opened at run time), or why none was found. */
export function cpuBlas(): { loaded: boolean; library?: string; error?: string } {
  return native.blasInfo();
}

/** Send f32 products to the host BLAS when present, or (the default) to the built-in GEMM, e.g. to compare the two. */
export function useCpuBlas(on: boolean): void {
  native.setUseBlas(on);
}

/** Whether the cpu backend's bf16 products run on the CPU's AMX tile unit (supported: the CPU has AMX-BF16 and the OS lets this process use it). */
export function cpuBf16Amx(): { supported: boolean; enabled: boolean } {
  return native.cpuBf16Amx();
}

/** Use AMX for bf16 products on cpu where the CPU has it (default), or convert to f32, e.g. to compare. */
export function useCpuBf16Amx(on: boolean): void {
  native.setUseBf16Amx(on);
}

/**
 * The micro-kernel of the cpu backend's built-in GEMM: the widest this CPU runs ('auto', the default), or one forced,
 * e.g. to test the AVX2 and plain C++ kernels on an AVX-512 machine. false when the CPU lacks its instructions (the
 * kernel is then unchanged). Process-wide.
 */
export function cpuGemmKernel(kernel: 'auto' | 'avx512' | 'avx2' | 'generic'): boolean {
  return native.setCpuGemmKernel(kernel);
}

/** The micro-kernel the built-in GEMM uses now: 'avx512', 'avx2' or 'generic'. */
export function cpuGemmKernelName(): string {
  return native.cpuGemmKernel();
}

/**
 * The cpu backend's serial f32 product (the one cpu kernels run inside their own parallel loops), in place on c:
 * c = alpha·op(a)·op(b) + beta·c over row-major storage with leading dimensions lda, ldb, ldc (elements).
 */
export function cpuSgemmSerial(a: Tensor, b: Tensor, c: Tensor, p: { transA: boolean; transB: boolean; m: number; n: number; k: number; alpha: number; beta: number; lda: number; ldb: number; ldc: number }): void {
  for (const t of [a, b, c]) if (t.dtype !== 'f32') throw new Error(`cpuSgemmSerial: tensors must be f32, got ${t.dtype}`);
  native.cpuSgemmSerial({ a: a.native('cpuSgemmSerial'), b: b.native('cpuSgemmSerial'), c: c.native('cpuSgemmSerial'), ...p });
}

/**
 * The tensor-core tile of bf16 products on cuda and sim: chosen by size ('auto', the default), or forced to the
 * 64×64 ('small') or 128×128 ('large') tile, e.g. to test or time one of them. Process-wide.
 */
export function gemmTile(tile: 'auto' | 'small' | 'large'): void {
  native.setMmaTile(tile);
}

/**
 * How many times each bf16 conv2d implicit-GEMM path (forward, input gradient, weight gradient; cuda and sim) has
 * run, process-wide, counted when the queued work runs (read after awaiting a result): the proof a test's geometry
 * took the path it means to check.
 */
export function convImplicitCounts(): { forward: number; backwardInput: number; backwardWeight: number } {
  return native.convImplicitCounts();
}
