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
//
// Every bucket is reduced in f32, whatever the gradients' dtype: a bf16 gradient (a bf16 student) is cast into its
// f32 bucket and rounded back once after the mean. MPI has no bf16 type to sum (MPI 4.1 defines none), and NCCL's
// bf16 all-reduce would round each partial sum of its ring to bf16, an error that grows with the ranks, where the
// f32 mean of bf16 values rounds once. The price is twice a bf16 bucket's bytes on the wire.
import { noGrad } from '../autograd';
import { cat, narrow } from '../ops/layout';
import { dtypeSize, Tensor } from '../tensor';
import type { ProcessGroup } from './distributed';

/** DDP's default bucket_cap_mb. */
export const DEFAULT_BUCKET_BYTES = 25 * 2 ** 20;

/**
 * `params` in reverse order, split into consecutive runs whose gradients together hold at most capBytes in f32,
 * the dtype they are reduced in (a tensor larger than that alone in its own). capBytes 0: one tensor per bucket.
 */
export function gradientBuckets<T extends { numel: number }>(params: readonly T[], capBytes: number): T[][] {
  if (!Number.isFinite(capBytes) || capBytes < 0) throw new Error(`gradientBuckets: capBytes must be a finite number >= 0, got ${JSON.stringify(capBytes)}`);
  const out: T[][] = [];
  let bytes = 0;
  for (let i = params.length - 1; i >= 0; i--) {
    const p = params[i];
    const b = p.numel * dtypeSize('f32');
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
    if (bucket.length === 1 && bucket[0].grad!.dtype === 'f32') {
      group.allReduce(bucket[0].grad!, 'mean');
      continue;
    }
    noGrad(() => {
      const views = bucket.map((p) => {
        const v = p.grad!.reshape([p.numel]);
        if (v.dtype === 'f32') return v;
        const f = v.cast('f32');
        v.dispose();
        return f;
      });
      const flat = views.length === 1 ? views[0] : cat(views);
      if (views.length > 1) for (const v of views) v.dispose();
      group.allReduce(flat, 'mean');
      let at = 0;
      for (const p of bucket) {
        const piece = narrow(flat, 0, at, p.numel);
        at += p.numel;
        const dtype = p.grad!.dtype;
        p.grad!.dispose();
        const back = dtype === 'f32' ? piece : piece.cast(dtype);
        p.grad = back.reshape(p.shape);
        if (back !== piece) back.dispose();
        piece.dispose();
      }
      flat.dispose();
    });
  }
  return buckets.length;
}
