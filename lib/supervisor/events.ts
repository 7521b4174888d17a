// Typed events of a migration run. The supervisor emits them; lib/progress turns them into a TTY
// display, JSON lines and the run's log file. Events never carry secrets.

import type { ExpectedConversion } from './conversion-times.js';
import type { ReaderKind } from '../input/index.js';

export type Phase = 'precheck' | 'placeholders' | 'sync' | 'rehearse' | 'shutdown' | 'copy' | 'final-sync' | 'convert' | 'build' | 'cleanup' | 'rollback';

export type PhaseState = 'start' | 'done' | 'skipped' | 'failed';

export type MigrationEvent =
  | { readonly type: 'run'; readonly state: 'start' | 'end'; readonly runId: string; readonly logFile?: string; readonly ok?: boolean }
  | {
      readonly type: 'phase';
      readonly vm: string;
      readonly phase: Phase;
      readonly state: PhaseState;
      readonly detail?: string;
      readonly durationMs?: number;
    }
  | {
      readonly type: 'disk';
      readonly vm: string;
      readonly disk: number;
      readonly name: string;
      readonly bytesDone: number;
      readonly bytesPlanned: number;
      readonly bytesWritten: number;
      readonly capacityBytes: number;
      readonly state: 'copying' | 'done' | 'failed';
    }
  | {
      /** Which reader a disk is read with (folder, lease, vddk, nfc) and why, once per copy or round. */
      readonly type: 'reader';
      readonly vm: string;
      readonly disk: number;
      readonly name: string;
      readonly reader: ReaderKind;
      readonly why: string;
    }
  | {
      /** A warm cutover's downtime: source stopped → VM (or template) created, split by step. */
      readonly type: 'downtime';
      readonly vm: string;
      readonly totalMs: number;
      readonly parts: readonly { readonly step: string; readonly ms: number }[];
    }
  | {
      /**
       * A guest conversion (or a warm migration's rehearsal of it): minutes with no bytes to count,
       * so a terminal shows the time spent against the time an earlier conversion took.
       */
      readonly type: 'conversion';
      readonly vm: string;
      readonly state: 'start' | 'step' | 'end';
      readonly rehearsal?: boolean;
      /** 'start': what an earlier conversion took; absent when none was measured. */
      readonly expected?: ExpectedConversion;
      /** 'step': virt-v2v's message ("Converting … to run on KVM") or oneswap's own step. */
      readonly step?: string;
      /** 'end' */
      readonly ok?: boolean;
      readonly durationMs?: number;
      readonly steps?: readonly { readonly step: string; readonly ms: number }[];
    }
  | {
      /**
       * A plan run's VM and its in-flight slot: a warm VM gives it back while it waits for its next
       * round or its window ('released'), queues for one when none is free ('waiting'), and has
       * one again ('taken'; `waitedMs` when it queued).
       */
      readonly type: 'slot';
      readonly vm: string;
      readonly state: 'released' | 'waiting' | 'taken';
      readonly waitedMs?: number;
    }
  | { readonly type: 'log'; readonly level: 'info' | 'warn' | 'error'; readonly vm?: string; readonly message: string }
  | {
      readonly type: 'result';
      readonly vm: string;
      readonly ok: boolean;
      readonly templateId?: number;
      readonly vmId?: number;
      readonly imageIds: readonly number[];
      /** A directory target: the VM template file written. */
      readonly templateFile?: string;
      readonly error?: string;
      readonly durationMs: number;
      /** The ESXi host the source VM ran on, when it was found. */
      readonly host?: string;
    };

export type EventSink = (event: MigrationEvent) => void;

/** Fans one event stream out to several consumers; a failing consumer never stops the run. */
export function fanOut(...sinks: EventSink[]): EventSink {
  return (event) => {
    for (const sink of sinks) {
      try {
        sink(event);
      } catch {
        // A broken display must not break a migration.
      }
    }
  };
}
