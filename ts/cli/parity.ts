// How far an output is from its reference, as the design's tolerances are stated: ‖a − b‖ / ‖b‖.
import type { Tensor } from '../tensor';

export async function relativeError(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = await Promise.all([a.toArray(), b.toArray()]);
  let num = 0;
  let den = 0;
  for (let i = 0; i < x.length; i++) {
    num += (x[i] - y[i]) ** 2;
    den += y[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
