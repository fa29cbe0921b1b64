// The tensor allGather's cases, shared by the MPI child (collectives.js, cpu tensors) and the NCCL child (nccl.js,
// cuda tensors) so that both paths are held to the same: f32, bf16 and i32, odd shapes, a scalar, an empty tensor,
// one of more than a queue chunk, ranks that disagree on shape or dtype (an Error on every rank, after which the
// group still gathers), and the Errors of bad input. Returns JSON-ready values; test/train/gather.ts checks them.
'use strict';

const message = (p) => p.then(() => null, (e) => e.message);

/** make(values, shape, dtype?) makes a tensor on the device under test; big is an odd element count. */
async function gatherCases(g, make, big) {
  const r = g.rank;
  const read = async (t) => ({ shape: t.shape, dtype: t.dtype, device: t.device, values: Array.from(await t.toArray()) });
  const out = {};
  // Values exact in bf16 (8 significant bits): multiples of 1/4 below 64.
  out.f32 = await read(await g.allGather(make(Array.from({ length: 15 }, (_, i) => r * 100 + i * 0.5 - 1), [3, 1, 5])));
  out.bf16 = await read(await g.allGather(make(Array.from({ length: 7 }, (_, i) => r * 8 + i * 0.25), [7], 'bf16')));
  out.i32 = await read(await g.allGather(make([r, 3 - 2 * r, 1 << 20], [1, 3], 'i32')));
  out.scalar = await read(await g.allGather(make([r + 0.5], [])));
  out.empty = await read(await g.allGather(make([], [2, 0, 3])));
  const large = await (await g.allGather(make(Array.from({ length: big }, (_, i) => r * 3 + (i % 1000) * 0.25), [big]))).toArray();
  out.largeBad = large.filter((v, i) => v !== Math.floor(i / big) * 3 + ((i % big) % 1000) * 0.25).length;
  out.mismatch = {
    length: await message(g.allGather(make(new Array(r + 2).fill(1), [r + 2]))),
    ndim: await message(g.allGather(make(new Array(6).fill(1), r === 0 ? [6] : [2, 3]))),
    dtype: await message(g.allGather(make([1, 2], [2], r === 0 ? 'f32' : 'bf16'))),
  };
  // The mismatches moved no data: the ranks are still in step.
  out.after = await read(await g.allGather(make([r], [1])));
  out.errors = {
    notTensor: await message(g.allGather([1, 2])),
    sim: await message(g.allGather(make([1], [1]).to('sim'))),
  };
  return out;
}

module.exports = { gatherCases };
