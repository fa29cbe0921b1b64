// The contract between the data pipeline (ts/data) and the trainer (ts/train): a source hands out batches of
// images already decoded and augmented, in [0, 1], at the resolution of the partition the batch was drawn from.
// Teachers resize and normalise for themselves (each has its own input size, mean and std).

/** One (resolution, batch size) partition of the paper's training mix (e.g. 432 px × 32 and 1024 px × 2). */
export interface Partition {
  /** Student input height and width in pixels (multiples of the patch size). */
  height: number;
  width: number;
  batch: number;
  /** Relative chance that a step draws from this partition (default 1). */
  weight?: number;
}

export interface ImageBatch {
  /** [batch, 3, height, width] RGB in [0, 1], row-major. */
  images: Float32Array;
  batch: number;
  height: number;
  width: number;
  /** Stable id of each image (its path relative to the dataset root, or a list-file line): keys feature shards. */
  ids: string[];
  /** Index into the source's partitions of the partition this batch came from. */
  partition: number;
}

/** JSON-serialisable position of a source, saved with a training checkpoint so a resumed run sees the same data. */
export type DataState = Record<string, unknown>;

export interface DataSource {
  readonly partitions: readonly Partition[];
  /**
   * The next batch; deterministic given the source's seed and state. With a partition index, a batch of that
   * partition instead of a weighted draw (the trainer's rank groups each draw their own).
   */
  next(partition?: number): Promise<ImageBatch>;
  state(): DataState;
  /** Continues exactly where `state()` was taken. */
  restore(state: DataState): void;
  /** Stops worker threads; the source is unusable afterwards. */
  close(): Promise<void>;
}
