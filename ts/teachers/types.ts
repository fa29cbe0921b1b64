// What a teacher gives the trainer: per head (named like the student adaptor it trains), optional summary
// targets [B, C] and feature targets [B, h·w, C] on the teacher's own grid. The loss aligns grids (spec §3).
import type { Tensor } from '../tensor';

export interface TeacherHeadTargets {
  /** [B, C]; absent for a teacher without a summary target (SAM). */
  summary?: Tensor;
  /** [B, h·w, C] in row-major (h, w) order. */
  features: Tensor;
  grid: [number, number];
}

export type TeacherTargets = Record<string, TeacherHeadTargets>;

/** Which images a batch holds: a shard teacher looks its targets up by id. */
export interface TeacherBatch {
  ids: readonly string[];
}

export interface Teacher {
  readonly name: string;
  /** Resolution the trainer resizes the student's images to before forward; null: the student's own. */
  readonly inputSize: [number, number] | null;
  /** Whether forward reads the pixels (false: the trainer may skip resizing them). */
  readonly needsImages: boolean;
  /** The heads forward returns, with their channel counts. */
  readonly heads: Readonly<Record<string, { summaryDim: number | null; featureDim: number }>>;
  /**
   * images [B, 3, h, w] in [0, 1] at inputSize → targets per head, never recorded for autograd. The caller owns
   * (and disposes) the returned tensors.
   */
  forward(images: Tensor, batch: TeacherBatch): Promise<TeacherTargets>;
  close(): Promise<void>;
}

/** Disposes every tensor of a teacher's targets. */
export function disposeTargets(targets: TeacherTargets): void {
  for (const t of Object.values(targets)) {
    t.summary?.dispose();
    t.features.dispose();
  }
}
