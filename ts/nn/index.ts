// The module layer: `import { nn } from 'am-radio'`.
export { Module, ModuleDict, ModuleList, Sequential } from './module';
export type { LoadStateDictOptions, StateDict, TensorModule } from './module';
export { Parameter } from './parameter';
export { Gelu, LayerNorm, LayerScale, Linear } from './layers';
export { BatchNorm2d, Conv2d, ConvTranspose2d } from './conv';
export type { Conv2dLayerOptions } from './conv';
export type { LayerOptions } from './layers';
export { scaleLastDim, scaleRows } from './broadcast';
export { escape, tidy } from '../scope';
export type { TidyOptions } from '../scope';
