// supervisor: turns a request into phases per VM (precheck → shutdown → placeholders → copy →
// convert → build → cleanup, rollback on failure), persists what exists in a journal so a crash
// or Ctrl-C resumes, runs several VMs under a budget, and emits typed events (events.ts) that
// lib/progress displays and logs. Warm migration (warm.ts) copies while the VM runs in CBT rounds
// (cbt-round.ts) and cuts over in a short, measured window.

export type { MigrationEvent, EventSink, Phase, PhaseState } from './events.js';
export { fanOut } from './events.js';
export { PidLock } from './pid-lock.js';
export { Journal, defaultStateDir, type JournalData, type JournalDisk } from './journal.js';
export { coldImportVm } from './cold-import.js';
export type { ImportOptions, ImportContext, MigrationOptions, VmResult } from './steps.js';
// How one disk's areas move from its reader into a raw file: also the datastore driver's cp.
export { copyReading, placeOneDisk, planPoweredOffReads, networkCandidates, type ReadingCopy, type PlannedRead } from './steps.js';
export { sourceRefusals, foreignSnapshotRefusal, type SourceMode } from './source-refusals.js';
export { newRunId, mapLimited } from './run.js';
export { Slots, KeyedSlots, runBudgets, hostKey, idleWhile, type RunBudgets, type Release, type Idle } from './budgets.js';
export { runFleet, type FleetVm, type FleetRun, type FleetVmResult } from './fleet.js';
export { warmStart, warmSync, warmCutover, warmAbort, warmImport, type WarmOptions, type CutoverPolicy, type WarmResult } from './warm.js';
export { warmStatus, measuredRates, type WarmStatus, type WarmDiskStatus, type DowntimePrediction } from './warm-status.js';
export { convertImages, vmConversionRequest, sourceMacsNetwork, describeConversion, type ConvertImagesRequest, type ImagesConversion, type ImageToConvert } from './conversion.js';
export type { ExpectedConversion } from './conversion-times.js';
// What `plan estimate` reads: past conversions (by VM, OS, OS family) and measured copy rates.
export { readConversionTimes, expectedConversion, osFamily, latestOfFamily, type ConversionTimes } from './conversion-times.js';
export { readCopyRates, recordCopySample, withCopySample, rateKey, throughputCap, type CopyRates, type CopyRate, type CopySample, type RatePlace, type Throughput, type ThroughputByLevel } from './copy-rates.js';
export { readStepTimes, type StepTimes, type StepTime } from './step-times.js';
export { fileImportVm, type FileImportOptions, type FileImportContext, type FileTarget } from './file-import.js';
