// Where the time goes: per-op totals of the work a function queues on one device, by the native op names
// ("matmul", "attention", "layerNorm backward", ...). Each op is timed where it runs (the queue thread on cpu and
// sim, events around its launches on cuda), so the figures add up to the device's busy time, not to JS time.
import { requireBackend, synchronize } from './backends';
import { Device, native } from './native';

export interface OpTime {
  op: string;
  calls: number;
  ms: number;
  /** Fraction of the profiled ops' total time. */
  share: number;
}

export interface Profile {
  device: Device;
  /** Slowest first. */
  ops: OpTime[];
  /** Sum of the ops' times. */
  opMs: number;
  /** From the start of fn to the end of the last op it queued. */
  wallMs: number;
}

const active = new Set<Device>();

/**
 * Runs fn with op timing on for the device (default cpu), waits for everything it queued, and returns its result
 * with the profile. Work queued before the call is finished first and not counted. One profile per device at a
 * time: a nested call for the same device is an Error.
 */
export async function profile<T>(fn: () => T | Promise<T>, opts: { device?: Device } = {}): Promise<{ result: T; profile: Profile }> {
  const device = opts.device ?? 'cpu';
  requireBackend(device);
  if (active.has(device)) throw new Error(`profile: ${device} is already being profiled (profiles of one device do not nest)`);
  active.add(device);
  try {
    await synchronize(device);
    native.setProfiling(device, true);
    const t0 = process.hrtime.bigint();
    let result: T;
    try {
      result = await fn();
      await synchronize(device);
    } finally {
      native.setProfiling(device, false);
    }
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const raw = native.takeProfile(device);
    const opMs = raw.reduce((s, o) => s + o.ms, 0);
    const ops = raw.map((o) => ({ ...o, share: opMs > 0 ? o.ms / opMs : 0 })).sort((a, b) => b.ms - a.ms);
    return { result, profile: { device, ops, opMs, wallMs } };
  } finally {
    active.delete(device);
  }
}

/** The profile as a table: op, calls, total ms, ms per call, share. */
export function formatProfile(p: Profile): string {
  const rows = p.ops.map((o) => [o.op, String(o.calls), o.ms.toFixed(2), (o.ms / o.calls).toFixed(3), `${(100 * o.share).toFixed(1)}%`]);
  const head = ['op', 'calls', 'ms', 'ms/call', 'share'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    `profile on ${p.device}: ${p.opMs.toFixed(1)} ms in ops, ${p.wallMs.toFixed(1)} ms wall`,
    line(head),
    ...rows.map(line),
  ].join('\n');
}
