// The op families beyond Tensor's methods, each in its own module: `import { ops } from 'am-radio'`.
export { cpe, cpeTrain, interpolate } from './interpolate';
export type { CpeOptions, CpeTrainOptions, InterpolateLayout, InterpolateMode, InterpolateOptions } from './interpolate';
