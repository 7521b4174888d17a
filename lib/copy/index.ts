// copy: the engine that moves byte ranges from a RangeSource into a TargetWriter (target.ts: a raw
// file, a qcow2 or RBD image; lib/output has them) at the same offsets: parallel range streams,
// bounded memory (streams x buffer), zero blocks left as holes, per-range retry that resumes
// inside the range, progress counters, and a callback per finished range for the resume journal.
// One engine for cold and warm imports and the datastore driver. lib/copy knows no source format
// and no kind of target.

export { copyExtents, ShortReadError, type RangeSource, type CopyOptions, type CopyStats, type CopyProgress } from './engine.js';
export type { TargetWriter } from './target.js';
export { together } from './together.js';
