// The pixels a teacher sees: the student's batch resized on the device to the teacher's input size.
import { noGrad } from '../autograd';
import { interpolate } from '../ops/interpolate';
import type { Tensor } from '../tensor';
import type { Teacher } from './types';

/** images itself when the teacher takes the student's resolution, else a bilinear resize (align_corners false). */
export function teacherImages(images: Tensor, teacher: Teacher): Tensor {
  const size = teacher.inputSize;
  if (!size || !teacher.needsImages || (size[0] === images.shape[2] && size[1] === images.shape[3])) return images;
  return noGrad(() => interpolate(images, { size, alignCorners: false }));
}
