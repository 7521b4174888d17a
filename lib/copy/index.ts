// copy: the engine that moves byte ranges from a RangeSource into a raw target file at the same
// offsets: parallel range streams, bounded memory (streams x buffer), zero blocks left as holes,
// per-range retry that resumes inside the range, progress counters, and a callback per finished
// range for the resume journal. One engine for cold and warm imports and the datastore driver.
// For files: decodeVmdk, one sequential pass over a VMDK's files (inside an OVA or not) into the
// raw target, grains inflated by worker threads, zeros left as holes, manifest digests checked.

export { copyExtents, ShortReadError, type RangeSource, type CopyOptions, type CopyStats, type CopyProgress } from './engine.js';
export { together } from './together.js';
export { decodeVmdk, type DecodeOptions, type DecodeStats } from './vmdk-decode.js';
export { clearTargetFile } from './target-file.js';
