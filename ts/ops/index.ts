// The op families beyond Tensor's methods, each in its own module: `import { ops } from 'am-radio'`.
export { layerNorm } from './norm';
export { gelu, relu, sigmoid, silu } from './activation';
export type { ActivationKind } from './activation';
export { linear, matmul } from './linear';
export type { LinearOptions, MatmulOptions } from './linear';
export { multiTeacherLoss } from './loss';
export type { LossSide, MultiTeacherLossOptions, MultiTeacherLossResult, TeacherTerm } from './loss';
export { cpe, cpeTrain, interpolate } from './interpolate';
export type { CpeOptions, CpeTrainOptions, InterpolateLayout, InterpolateMode, InterpolateOptions } from './interpolate';
export { attention } from './attention';
export type { AttentionOptions } from './attention';
export { assembleTokens, gatherRows, patchify, sliceRows } from './tokens';
export type { PatchifyOptions } from './tokens';
export { cat, chunk, MAX_PERMUTE_DIMS, mean, narrow, pad2d, permute, sum, windowPartition, windowReverse } from './layout';
export type { PadMode, WindowLayout, WindowPartition, WindowPartitionOptions } from './layout';
