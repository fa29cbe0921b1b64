// The tensor all-gather's checks, shared by the process groups (./distributed): the input, and the ranks'
// agreement on shape and dtype before any byte moves. MPI's and NCCL's all-gathers take one count for every rank,
// so ranks whose tensors differ would read past a buffer or fill the result with garbage: they must learn of the
// mismatch first, every one of them, and throw the same Error.
import type { NativeBuffer } from '../native';
import { DType, Tensor } from '../tensor';

const OP = 'allGather';
const DTYPES: readonly DType[] = ['f32', 'bf16', 'i32'];

/** The input's buffer; a non-tensor or a tensor on a device no collective reaches is the named Error. */
export function checkGatherInput(t: Tensor): NativeBuffer {
  if (!(t instanceof Tensor)) throw new Error(`${OP}: expected a Tensor`);
  if (t.device !== 'cpu' && t.device !== 'cuda') throw new Error(`${OP}: the tensor is on ${t.device}; the collectives take cpu tensors (MPI) or cuda tensors (NCCL)`);
  return t.native(OP);
}

/**
 * Resolves once every rank has seen every rank's shape and dtype through `gather` (the group's allGatherScalars);
 * rejects on every rank alike, naming each rank's, when they differ. Two rounds: the ranks' dimension counts first,
 * so that each rank can pad its shape to the longest and the second round has one length everywhere (a differing
 * length would only say "different numbers of values").
 */
export async function agreeOnLayout(t: Tensor, gather: (values: readonly number[]) => Promise<number[][]>): Promise<void> {
  const ndims = (await gather([t.shape.length])).map((v) => v[0]);
  const longest = Math.max(...ndims);
  const mine = [DTYPES.indexOf(t.dtype), ...t.shape, ...new Array<number>(longest - t.shape.length).fill(-1)];
  const all = await gather(mine);
  const dtypes = all.map((v) => DTYPES[v[0]] ?? `dtype #${v[0]}`);
  const shapes = all.map((v, r) => `[${v.slice(1, 1 + ndims[r]).join(', ')}]`);
  const byRank = (what: string[]) => what.map((w, r) => `rank ${r}: ${w}`).join(', ');
  const problems: string[] = [];
  if (new Set(shapes).size > 1) problems.push(`different shapes (${byRank(shapes)})`);
  if (new Set(dtypes).size > 1) problems.push(`different dtypes (${byRank(dtypes)})`);
  if (problems.length) throw new Error(`${OP}: the ranks passed tensors of ${problems.join(' and ')}; every rank must pass the same shape and dtype`);
}
