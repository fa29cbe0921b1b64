// The module layer: `import { nn } from 'am-radio'`.
export { Module, ModuleDict, ModuleList, Sequential } from './module';
export type { LoadStateDictOptions, StateDict, TensorModule } from './module';
export { Parameter } from './parameter';
export { Gelu, LayerNorm, LayerScale, Linear } from './layers';
export type { LayerOptions } from './layers';
export { scaleLastDim, scaleRows } from './broadcast';
export { escape, tidy } from '../scope';
export type { TidyOptions } from '../scope';
