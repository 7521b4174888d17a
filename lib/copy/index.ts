// copy: the engine that moves byte ranges from a RangeSource into a TargetWriter (target.ts: a raw
// file, a qcow2 or RBD image; lib/output has them) at the same offsets: parallel range streams, bounded memory (streams x buffer), zero blocks left as holes,
// per-range retry that resumes inside the range, progress counters, and a callback per finished
// range for the resume journal. One engine for cold and warm imports and the datastore driver.
// Also the raw target file's helpers (open, writeback, hole punching, errors) that the readers
// which write targets themselves use: lib/input's VMDK decoder. lib/copy knows no source format.

export { copyExtents, ShortReadError, type RangeSource, type CopyOptions, type CopyStats, type CopyProgress } from './engine.js';
export type { TargetWriter } from './target.js';
export { together } from './together.js';
export { clearTargetFile, openTargetFile, targetWriteError, Writeback } from './target-file.js';
export { punchHoles } from './holes.js';
