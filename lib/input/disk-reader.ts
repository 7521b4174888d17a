// How a disk's bytes reach the copy: one interface over the ways ESXi serves a disk.
//
// - folder: the datastore's HTTPS /folder service, with Range. Only a powered-off VM's flat
//   extents on a file datastore: ESXi refuses a file download of a running VM's disk chain, and a
//   vSAN datastore has no flat file at all.
// - lease: an NFC export lease (ExportSnapshot of a running VM's snapshot, ExportVm of a
//   powered-off VM). Each disk comes as one streamOptimized VMDK stream, no Range: it is decoded
//   on the fly, in order, and only the planned areas are written.
// - vddk / nfc: nbdkit's vddk plugin (the user's VMware VDDK) or its open nfc plugin, served over
//   NBD on a Unix socket: random access to a snapshot (or a powered-off disk), with block status.
//
// A reader gives either random access (the copy engine asks for ranges) or one ordered pass.

import type { RangeSource, CopyProgress, CopyStats, TargetWriter } from '../copy/index.js';
import type { Extent } from '../extents/index.js';

export type ReaderKind = 'folder' | 'lease' | 'vddk' | 'nfc';

/** What the user asked for with --transport. */
export type TransportChoice = 'auto' | ReaderKind;

/** A disk opened for random access: the copy engine reads the planned ranges from `source`. */
export interface RangeReading {
  readonly access: 'ranges';
  readonly reader: ReaderKind;
  readonly source: RangeSource;
  /** Allocated areas as the reader sees them (NBD block status), when it can tell. */
  readonly allocated?: (signal: AbortSignal) => Promise<Extent[]>;
  /** Several connections of one reader can share the work. */
  readonly maxStreams: number;
  /** Stops what the reader started (an nbdkit process); safe to call twice. */
  close(): Promise<void>;
}

export interface StreamCopyOptions {
  /** Where the disk goes, opened by the caller, the disk's exact size. */
  readonly target: TargetWriter;
  readonly capacity: number;
  /** Only these areas of the target are written (zeros in them become holes); the rest is skipped. */
  readonly areas: readonly Extent[];
  /** True when the target reads as zeros outside what this copy writes (a fresh placeholder). */
  readonly targetIsZero: boolean;
  readonly signal: AbortSignal;
  readonly onProgress?: (p: CopyProgress) => void;
}

/** A disk that can only be read once, start to end (an export lease's stream). */
export interface StreamReading {
  readonly access: 'stream';
  readonly reader: ReaderKind;
  /** Shown in errors: the disk's file name. */
  readonly name: string;
  copyInto(opts: StreamCopyOptions): Promise<CopyStats>;
}

export type DiskReading = RangeReading | StreamReading;

/** Which reader a disk gets and why, for the run log and the JSON events. */
export interface ReaderChoice {
  readonly reader: ReaderKind;
  readonly why: string;
}
