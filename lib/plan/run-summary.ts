// What a plan run leaves behind: one record per VM and wave, in a JSON file next to the run log,
// rendered for people as text and as a self-contained HTML report (report-html.ts).

export type VmOutcome = 'done' | 'failed' | 'pending' | 'skipped';

export interface PhaseSpan {
  /** A supervisor phase (lib/supervisor/events.ts Phase), or 'waiting' for time spent queued on a budget. */
  readonly phase: string;
  /** ISO 8601 times. */
  readonly start: string;
  readonly end: string;
  readonly state: 'done' | 'failed' | 'skipped';
}

export interface VmRunRecord {
  readonly key: string;
  readonly wave: string;
  readonly mode: 'cold' | 'warm';
  /** The ESXi host the VM ran on when the run read it. */
  readonly host?: string;
  readonly outcome: VmOutcome;
  readonly phases: readonly PhaseSpan[];
  readonly bytesCopied: number;
  readonly bytesWritten: number;
  /** Warm: source stopped → template or VM created. Cold: the whole import, since the VM is off throughout. */
  readonly downtimeMs?: number;
  readonly durationMs: number;
  readonly templateId?: number;
  readonly vmId?: number;
  readonly imageIds: readonly number[];
  /** One line, as the CLI prints it. */
  readonly error?: string;
  /** Done by an earlier run of the plan: this run did not start it. */
  readonly finishedEarlier?: true;
}

export interface WaveRecord {
  readonly name: string;
  readonly start?: string;
  readonly end?: string;
  readonly vms: readonly string[];
}

export interface PlanRunSummary {
  readonly version: 1;
  readonly plan: string;
  readonly runId: string;
  readonly start: string;
  readonly end: string;
  readonly budgets: {
    readonly readsPerHost: number;
    readonly converting: number;
    readonly inFlight: number;
    readonly datastoreBytesPerSec: Readonly<Record<string, number>>;
  };
  readonly waves: readonly WaveRecord[];
  readonly vms: readonly VmRunRecord[];
}
