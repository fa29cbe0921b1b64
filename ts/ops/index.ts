// The op families beyond Tensor's methods, each in its own module: `import { ops } from 'am-radio'`.
export { multiTeacherLoss } from './loss';
export type { LossSide, MultiTeacherLossOptions, MultiTeacherLossResult, TeacherTerm } from './loss';
