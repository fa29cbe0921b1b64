// Which backends exist here, their memory, and waiting for queued work.
import { BackendInfo, Device, native } from './native';

export type { BackendInfo } from './native';

/** Every backend, compiled or not, with why it is unavailable where it is. */
export function backends(): BackendInfo[] {
  return native.backends();
}

/** The backend's info, or an Error that says why it cannot be used. */
export function requireBackend(device: Device): BackendInfo {
  const info = backends().find((b) => b.name === device);
  if (!info) throw new Error(`unknown device ${JSON.stringify(device)} (expected cpu, cuda or sim)`);
  if (!info.available) throw new Error(`backend ${device} is not available: ${info.reason ?? 'unknown reason'}`);
  return info;
}

/** Bytes held by live tensors (inUse) and kept for reuse by the caching allocator (cached), per backend. */
export function memory(): Partial<Record<Device, { inUse: number; cached: number }>> {
  return native.memory();
}

/** Resolves when all work queued on the device is done; rejects with the error of failed queued work. */
export function synchronize(device: Device = 'cpu'): Promise<void> {
  requireBackend(device);
  return native.synchronize(device);
}

/** Returns the device's cached blocks to the system (waits for queued work first). */
export function emptyCache(device: Device = 'cpu'): void {
  requireBackend(device);
  native.emptyCache(device);
}

/**
 * How many ops may wait in a cpu or sim backend's queue before the next op call blocks until one has run
 * (default 1024, or the environment variable AM_RADIO_QUEUE_DEPTH). Every queued op keeps its tensors alive, so
 * the depth bounds the memory a script holds when it queues work faster than the device runs it. Process-wide.
 */
export function setQueueDepth(depth: number): void {
  native.setQueueDepth(depth);
}

export function queueDepth(): number {
  return native.queueDepth();
}
