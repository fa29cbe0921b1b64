// The float64 reference of conv2d, shared by the conv tests: the geometry, the one list of (output, input, weight)
// index triples every map walks, the forward and its exact adjoints.

export interface Conv {
  n: number; c: number; h: number; w: number; o: number; kh: number; kw: number;
  stride: [number, number]; padding: [number, number]; dilation: [number, number]; groups: number;
}

export const outSize = (i: number, k: number, s: number, p: number, d: number) => Math.floor((i + 2 * p - d * (k - 1) - 1) / s) + 1;

// For every (output, input, weight) index triple the convolution multiplies: forward, adjoints and the
// transposed convolution all walk this one list.
export function taps(g: Conv, visit: (yi: number, xi: number, wi: number) => void): [number, number] {
  const ho = outSize(g.h, g.kh, g.stride[0], g.padding[0], g.dilation[0]);
  const wo = outSize(g.w, g.kw, g.stride[1], g.padding[1], g.dilation[1]);
  const cg = g.c / g.groups, og = g.o / g.groups;
  for (let n = 0; n < g.n; n++)
    for (let o = 0; o < g.o; o++) {
      const grp = Math.floor(o / og);
      for (let oy = 0; oy < ho; oy++)
        for (let ox = 0; ox < wo; ox++)
          for (let cl = 0; cl < cg; cl++)
            for (let i = 0; i < g.kh; i++) {
              const iy = oy * g.stride[0] - g.padding[0] + i * g.dilation[0];
              if (iy < 0 || iy >= g.h) continue;
              for (let j = 0; j < g.kw; j++) {
                const ix = ox * g.stride[1] - g.padding[1] + j * g.dilation[1];
                if (ix < 0 || ix >= g.w) continue;
                const c = grp * cg + cl;
                visit(((n * g.o + o) * ho + oy) * wo + ox, ((n * g.c + c) * g.h + iy) * g.w + ix, ((o * cg + cl) * g.kh + i) * g.kw + j);
              }
            }
    }
  return [ho, wo];
}

export function refConv(g: Conv, x: Float64Array, w: Float64Array, b?: Float64Array): Float64Array {
  const [ho, wo] = taps(g, () => undefined);
  const y = new Float64Array(g.n * g.o * ho * wo);
  taps(g, (yi, xi, wi) => (y[yi] += x[xi] * w[wi]));
  if (b) for (let i = 0; i < y.length; i++) y[i] += b[Math.floor(i / (ho * wo)) % g.o];
  return y;
}

// Adjoints of the bilinear map y = conv(x, w) for the loss Σ y·r.
export function refGrads(g: Conv, x: Float64Array, w: Float64Array, r: Float64Array): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  taps(g, (yi, xi, wi) => {
    dx[xi] += r[yi] * w[wi];
    dw[wi] += r[yi] * x[xi];
  });
  return { dx, dw };
}

export function conv(n: number, c: number, h: number, w: number, o: number, k: [number, number], extra: Partial<Conv> = {}): Conv {
  return { n, c, h, w, o, kh: k[0], kw: k[1], stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, ...extra };
}
