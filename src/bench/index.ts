export { benchAnn, type AnnBenchOptions } from './ann.ts';
export { ClusteredSpace, gaussian, normalize, rng } from './synthetic.ts';
