// Learning-rate schedule: linear warm-up to the base rate, then cosine annealing to a floor (spec §4.4: AdamW with
// cosine annealing; the warm-up length is not published).

export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  /** Total optimizer steps: the cosine reaches minLr at this step. */
  totalSteps: number;
  /** Default 0: no warm-up. */
  warmupSteps?: number;
  /** Default 0. */
  minLr?: number;
}

/** Checks the options once, naming the field; returns them with defaults filled in. */
export function checkSchedule(o: ScheduleOptions, where = 'schedule'): Required<ScheduleOptions> {
  if (!o || typeof o !== 'object') throw new Error(`${where} must be an object { lr, totalSteps, warmupSteps?, minLr? }`);
  const nonNeg = (k: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new Error(`${where}.${k} must be a finite number >= 0, got ${JSON.stringify(v)}`);
    return v;
  };
  const lr = nonNeg('lr', o.lr);
  const minLr = nonNeg('minLr', o.minLr ?? 0);
  if (minLr > lr) throw new Error(`${where}.minLr ${minLr} is above lr ${lr}`);
  const totalSteps = nonNeg('totalSteps', o.totalSteps);
  const warmupSteps = nonNeg('warmupSteps', o.warmupSteps ?? 0);
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new Error(`${where}.totalSteps must be a positive integer, got ${o.totalSteps}`);
  if (!Number.isInteger(warmupSteps) || warmupSteps > totalSteps) throw new Error(`${where}.warmupSteps must be an integer in [0, totalSteps ${totalSteps}], got ${o.warmupSteps}`);
  return { lr, totalSteps, warmupSteps, minLr };
}

/**
 * The rate of optimizer step `step` (0-based): (step + 1)/warmup · lr during warm-up (so the first step does not
 * run at 0), then minLr + ½(lr − minLr)(1 + cos(π·t)) with t going from 0 at the end of warm-up to 1 at totalSteps;
 * minLr beyond.
 */
export function learningRate(step: number, o: ScheduleOptions): number {
  const { lr, totalSteps, warmupSteps, minLr } = checkSchedule(o);
  if (!Number.isInteger(step) || step < 0) throw new Error(`learningRate: step must be a non-negative integer, got ${step}`);
  if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
  const decay = totalSteps - warmupSteps;
  if (decay <= 0 || step >= totalSteps) return minLr;
  const t = (step - warmupSteps) / decay;
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * t));
}
