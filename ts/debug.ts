// Switches for checking kernels, used by the test suite and useful when writing a new op.
import { Device, native } from './native';

/** Fill every new allocation with 0xFF bytes (NaN in f32/bf16), so outputs a kernel forgets to write show up. */
export function poisonAllocations(on: boolean): void {
  native.setPoisonAllocations(on);
}

/** Queue work on a device that fails with message: the next read on that device rejects with it. */
export function queueFailure(device: Device, message: string): void {
  native.queueFailure(device, message);
}

/** The host BLAS the cpu backend's GEMM uses (OpenBLAS, opened at run time), or why none was found. */
export function cpuBlas(): { loaded: boolean; library?: string; error?: string } {
  return native.blasInfo();
}

/** Use the host BLAS when present (default) or the built-in blocked GEMM, e.g. to compare the two. */
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
 * The tensor-core tile of bf16 products on cuda and sim: chosen by size ('auto', the default), or forced to the
 * 64×64 ('small') or 128×128 ('large') tile, e.g. to test or time one of them. Process-wide.
 */
export function gemmTile(tile: 'auto' | 'small' | 'large'): void {
  native.setMmaTile(tile);
}
