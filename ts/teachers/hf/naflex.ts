// SigLIP2 NaFlex's image sizing (transformers' Siglip2ImageProcessor, get_image_size_for_max_num_patches): each image
// is resized, its aspect ratio kept, to the largest scale whose sides, rounded up to whole patches, fit the patch budget.

/**
 * The [h, w] in pixels (multiples of patch, each at least one patch) that the processor resizes an image of
 * height × width to for at most maxNumPatches patches. The scale is found by the processor's own bisection
 * (on [1e-6, 100], to 1e-5), in the same float arithmetic, so that the chosen size is the processor's to the pixel
 * even where a closed form would round differently at a boundary.
 */
export function naflexSize(height: number, width: number, patch: number, maxNumPatches: number): [number, number] {
  const eps = 1e-5;
  const side = (scale: number, size: number) => Math.max(patch, Math.ceil((size * scale) / patch) * patch);
  let lo = eps / 10;
  let hi = 100.0;
  while (hi - lo >= eps) {
    const mid = (lo + hi) / 2;
    if ((side(mid, height) / patch) * (side(mid, width) / patch) <= maxNumPatches) lo = mid;
    else hi = mid;
  }
  return [side(lo, height), side(lo, width)];
}
