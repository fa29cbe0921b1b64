// Gradient bucketing as PyTorch's DDP does it: the gradients are packed, in reverse parameter order (the order
// backward produces them in), into flat buckets of about 25 MB, and each bucket is one all-reduce. Per-parameter
// collectives would pay MPI's (or NCCL's) latency once per tensor: hundreds of them per step, most of them small
// (biases, norms), where the bandwidth is far below its large-message figure (bench/distributed).
//
// The buckets are reduced after backward, not as backward produces them. On the cpu backend a collective runs in
// the one op queue, between the ops queued before and after it, so issuing it mid-backward would not run it beside
// the remaining backward; and which parameters a rank's loss reaches (rank groups with their own teachers) is only
// known to every rank once the step's scalars are gathered. Overlap belongs with a collective stream of its own
// (NCCL on cuda).
import { noGrad } from '../autograd';
import { cat, narrow } from '../ops/layout';
import { dtypeSize, Tensor } from '../tensor';
import type { ProcessGroup } from './distributed';

/** DDP's default bucket_cap_mb. */
export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

/**
 * `params` in reverse order, split into consecutive runs whose gradients together hold at most capBytes (a tensor
 * larger than that alone in its own). capBytes 0: one tensor per bucket.
 */
export function gradientBuckets<T extends { numel: number; dtype: Tensor['dtype'] }>(params: readonly T[], capBytes: number): T[][] {
  if (!Number.isFinite(capBytes) || capBytes < 0) throw new Error(`gradientBuckets: capBytes must be a finite number >= 0, got ${JSON.stringify(capBytes)}`);
  const out: T[][] = [];
  let bytes = 0;
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i];
    const b = p.numel * dtypeSize(p.dtype);
    if (out.length === 0 || bytes + b > capBytes) {
      out.push([p]);
      bytes = b;
    } else {
      out[out.length - 1].push(p);
      bytes += b;
    }
  }
  return out;
}

/** Mean-reduces every listed parameter's gradient (each has one), one allReduce per bucket. Returns the number of buckets. */
export function allReduceBuckets(group: ProcessGroup, params: readonly Tensor[], capBytes: number): number {
  const buckets = gradientBuckets(params, capBytes);
  for (const bucket of buckets) {
    if (bucket.length === 1) {
      group.allReduce(bucket[0].grad!, 'mean');
      continue;
    }
    noGrad(() => {
      const views = bucket.map((p) => p.grad!.reshape([p.numel]));
      const flat = cat(views);
      for (const v of views) v.dispose();
      group.allReduce(flat, 'mean');
      let at = 0;
      for (const p of bucket) {
        const piece = narrow(flat, 0, at, p.numel);
        at += p.numel;
        p.grad!.dispose();
        p.grad = piece.reshape(p.shape);
        piece.dispose();
      }
      flat.dispose();
    });
  }
  return buckets.length;
}
