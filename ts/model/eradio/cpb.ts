// The SwinV2 continuous position bias's fixed inputs (spec §2.2, PosEmbMLPSwinv2D.relative_bias_initialization):
// the log-spaced coordinate table the CPB MLP reads and the index that spreads its rows over a window's token pairs.
// The reference stores both as buffers (relative_coords_table, relative_position_index); they are derived here from
// the window size, so a changed window needs no checkpoint change.

/** The CPB's input: every (Δy, Δx) of a ws × ws window, normalised by the pretrained window and log-spaced (f32 as the reference computes it). */
export function cpbCoordinates(ws: number, pretrained: number): Float32Array {
  const n = 2 * ws - 1;
  const out = new Float32Array(n * n * 2);
  const f = Math.fround;
  const norm = (d: number) => {
    const t = f(f(d / (pretrained - 1)) * 8);
    return f(f(Math.sign(t) * f(Math.log2(f(Math.abs(t) + 1)))) / 3);
  };
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      out[2 * (i * n + j)] = norm(i - (ws - 1));
      out[2 * (i * n + j) + 1] = norm(j - (ws - 1));
    }
  return out;
}

/** relative_position_index: row (Δy + ws − 1)·(2ws − 1) + (Δx + ws − 1) of the coordinate table for tokens i, j (row-major in the window). */
export function cpbIndex(ws: number): Int32Array {
  const L = ws * ws;
  const out = new Int32Array(L * L);
  for (let i = 0; i < L; i++)
    for (let j = 0; j < L; j++) {
      const dy = Math.floor(i / ws) - Math.floor(j / ws);
      const dx = (i % ws) - (j % ws);
      out[i * L + j] = (dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1);
    }
  return out;
}
