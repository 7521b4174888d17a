// copy: the engine that moves byte ranges from a RangeSource into a raw target file at the same
// offsets: parallel range streams, bounded memory (streams x buffer), zero blocks left as holes,
// per-range retry that resumes inside the range, progress counters, and a callback per finished
// range for the resume journal. One engine for cold, warm and file imports.

export { copyExtents, ShortReadError, type RangeSource, type CopyOptions, type CopyStats, type CopyProgress } from './engine.js';
export { together } from './together.js';
