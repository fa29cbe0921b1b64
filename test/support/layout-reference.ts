// Float64 references for the layout tests: each data-movement op as an index map (output element -> input element,
// -1 for padding) over its inputs laid end to end, with the op call it checks, and the one-dim reduction.
import { ops, Tensor } from '../../ts';

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Row-major multi-index of flat index i in shape. */
export function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}
export function ravel(idx: readonly number[], shape: readonly number[]): number {
  return idx.reduce((a, v, d) => a * shape[d] + v, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Pure data movement: each output element is one input element (or zero padding), so the float64 reference is an
// index map over the inputs laid end to end: src[j] = that index, -1 for padding. Its adjoint scatter-adds.

export interface Movement {
  name: string;
  shapes: number[][];
  run: (xs: Tensor[]) => Tensor[];
  /** One output shape and one index map per output. */
  ref: () => Array<{ shape: number[]; src: Int32Array }>;
  /** Several outputs read one input element (reflect / replicate): the gradient is a sum, compared with TOL. */
  sums?: boolean;
}

function mapOf(shape: number[], f: (idx: number[]) => number): { shape: number[]; src: Int32Array } {
  return { shape, src: Int32Array.from({ length: numel(shape) }, (_, j) => f(unravel(j, shape))) };
}

export function permuteCase(shape: number[], dims: number[]): Movement {
  const r = shape.length;
  const p = dims.map((d) => (d < 0 ? d + r : d));
  const outShape = p.map((d) => shape[d]);
  return {
    name: `permute ${JSON.stringify(shape)} by ${JSON.stringify(dims)}`,
    shapes: [shape],
    run: ([x]) => [ops.permute(x, dims)],
    ref: () => [mapOf(outShape, (o) => {
      const idx = new Array<number>(r);
      p.forEach((d, i) => (idx[d] = o[i]));
      return ravel(idx, shape);
    })],
  };
}

export function catCase(shapes: number[][], dim: number): Movement {
  const d = dim < 0 ? dim + shapes[0].length : dim;
  const outShape = [...shapes[0]];
  outShape[d] = shapes.reduce((a, s) => a + s[d], 0);
  return {
    name: `cat ${JSON.stringify(shapes)} along ${dim}`,
    shapes,
    run: (xs) => [ops.cat(xs, dim)],
    ref: () => [mapOf(outShape, (o) => {
      let at = o[d], base = 0, k = 0;
      while (at >= shapes[k][d]) {
        at -= shapes[k][d];
        base += numel(shapes[k]);
        k++;
      }
      const idx = [...o];
      idx[d] = at;
      return base + ravel(idx, shapes[k]);
    })],
  };
}

const narrowMap = (shape: number[], d: number, start: number, length: number) => {
  const outShape = [...shape];
  outShape[d] = length;
  return mapOf(outShape, (o) => ravel(o.map((v, k) => (k === d ? v + start : v)), shape));
};

export function narrowCase(shape: number[], dim: number, start: number, length: number): Movement {
  const d = dim < 0 ? dim + shape.length : dim;
  const s = start < 0 ? start + shape[d] : start;
  return {
    name: `narrow ${JSON.stringify(shape)} dim ${dim} start ${start} length ${length}`,
    shapes: [shape],
    run: ([x]) => [ops.narrow(x, dim, start, length)],
    ref: () => [narrowMap(shape, d, s, length)],
  };
}

export function chunkCase(shape: number[], chunks: number, dim: number, sizes: number[]): Movement {
  const d = dim < 0 ? dim + shape.length : dim;
  return {
    name: `chunk ${JSON.stringify(shape)} into ${chunks} along ${dim} (sizes ${sizes.join(', ')})`,
    shapes: [shape],
    run: ([x]) => ops.chunk(x, chunks, dim),
    ref: () => {
      let at = 0;
      return sizes.map((n) => narrowMap(shape, d, (at += n) - n, n));
    },
  };
}

/** F.pad's source index along one axis, -1 for zero padding. */
function padSource(o: number, lo: number, n: number, mode: ops.PadMode): number {
  let s = o - lo;
  if (s >= 0 && s < n) return s;
  if (mode === 'zero') return -1;
  if (mode === 'replicate') return s < 0 ? 0 : n - 1;
  if (s < 0) s = -s;
  if (s >= n) s = 2 * (n - 1) - s;
  return s;
}

export function padCase(shape: number[], pads: [number, number, number, number], mode: ops.PadMode): Movement {
  const [left, right, top, bottom] = pads;
  const H = shape[shape.length - 2], W = shape[shape.length - 1];
  const outShape = [...shape.slice(0, -2), H + top + bottom, W + left + right];
  return {
    name: `pad2d ${mode} ${JSON.stringify(shape)} by ${JSON.stringify(pads)}`,
    shapes: [shape],
    run: ([x]) => [ops.pad2d(x, pads, mode)],
    ref: () => [mapOf(outShape, (o) => {
      const h = padSource(o[o.length - 2], top, H, mode), w = padSource(o[o.length - 1], left, W, mode);
      return h < 0 || w < 0 ? -1 : ravel([...o.slice(0, -2), h, w], shape);
    })],
    sums: mode !== 'zero',
  };
}

/** Flat index of map element (b, h, w, c) in either layout. */
const mapIndex = (layout: ops.WindowLayout, [B, H, W, C]: number[], b: number, h: number, w: number, c: number) =>
  layout === 'NHWC' ? ((b * H + h) * W + w) * C + c : ((b * C + c) * H + h) * W + w;

/** window_partition of the map padded to multiples of ws, as an index map into it (-1: zero padding). */
function partitionMap(dims: number[], ws: number, layout: ops.WindowLayout, mode: 'zero' | 'reflect') {
  const [B, H, W, C] = dims;
  const nWh = Math.ceil(H / ws), nWw = Math.ceil(W / ws);
  return mapOf([B * nWh * nWw, ws * ws, C], ([n, t, c]) => {
    const b = Math.floor(n / (nWh * nWw)), wh = Math.floor(n / nWw) % nWh, ww = n % nWw;
    const h = padSource(wh * ws + Math.floor(t / ws), 0, H, mode), w = padSource(ww * ws + (t % ws), 0, W, mode);
    return h < 0 || w < 0 ? -1 : mapIndex(layout, dims, b, h, w, c);
  });
}

/** dims = [B, H, W, C] whatever the layout. */
export function partitionCase(dims: number[], ws: number, layout: ops.WindowLayout = 'NHWC', mode: 'zero' | 'reflect' = 'zero'): Movement {
  const [B, H, W, C] = dims;
  return {
    name: `windowPartition ${layout} ${mode} [B, H, W, C] = ${JSON.stringify(dims)} ws ${ws}`,
    shapes: [layout === 'NHWC' ? dims : [B, C, H, W]],
    run: ([x]) => {
      const r = ops.windowPartition(x, ws, { layout, mode });
      expect([r.Hp, r.Wp]).toEqual([Math.ceil(H / ws) * ws, Math.ceil(W / ws) * ws]);
      return [r.tokens];
    },
    ref: () => [partitionMap(dims, ws, layout, mode)],
    sums: mode === 'reflect',
  };
}

export function reverseCase(B: number, H: number, W: number, C: number, ws: number, layout: ops.WindowLayout = 'NHWC'): Movement {
  const Hp = Math.ceil(H / ws) * ws, Wp = Math.ceil(W / ws) * ws, nWh = Hp / ws, nWw = Wp / ws;
  const shape = layout === 'NHWC' ? [B, H, W, C] : [B, C, H, W];
  return {
    name: `windowReverse to ${layout} ${JSON.stringify(shape)} ws ${ws} from ${Hp}x${Wp}`,
    shapes: [[B * nWh * nWw, ws * ws, C]],
    run: ([t]) => [ops.windowReverse(t, ws, H, W, Hp, Wp, { layout })],
    ref: () => [mapOf(shape, (o) => {
      const [b, h, w, c] = layout === 'NHWC' ? o : [o[0], o[2], o[3], o[1]];
      const n = (b * nWh + Math.floor(h / ws)) * nWw + Math.floor(w / ws);
      return (n * ws * ws + (h % ws) * ws + (w % ws)) * C + c;
    })],
  };
}

/** inputs laid end to end, then read through each index map (0 for padding). */
export function gather(flat: Float64Array, src: Int32Array): Float64Array {
  return Float64Array.from(src, (s) => (s < 0 ? 0 : flat[s]));
}

/** The float64 sum (or mean) over one dim. */
export function refReduce(x: ArrayLike<number>, shape: number[], dim: number, mean: boolean): Float64Array {
  const d = dim < 0 ? dim + shape.length : dim;
  const outer = numel(shape.slice(0, d)), n = shape[d], inner = numel(shape.slice(d + 1));
  const out = new Float64Array(outer * inner);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += x[(o * n + k) * inner + i];
      out[o * inner + i] = mean ? acc / n : acc;
    }
  return out;
}

