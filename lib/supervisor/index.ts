// supervisor: turns a request into phases per VM (precheck → shutdown → placeholders → copy →
// convert → build → cleanup, rollback on failure), persists what exists in a journal so a crash
// or Ctrl-C resumes, runs several VMs under a budget, and emits typed events (events.ts) that
// lib/progress displays and logs.

export type { MigrationEvent, EventSink, Phase, PhaseState } from './events.js';
export { fanOut } from './events.js';
export { Journal, defaultStateDir, type JournalData, type JournalDisk } from './journal.js';
export { coldImportVm, type ColdImportOptions, type ColdImportContext, type VmResult } from './cold-import.js';
export { coldImport, newRunId, mapLimited } from './run.js';
export { convertImages, describeConversion, type ConvertImagesRequest, type ImagesConversion, type ImageToConvert } from './conversion.js';
