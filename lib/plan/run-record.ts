// A plan run as its events tell it: for each VM its phase, bytes, rate and last error. The same
// record gives `plan status` its snapshot while the run goes on and the summary at its end, so
// what another shell sees and what the report says cannot disagree.

import { RateMeter } from '../progress/index.js';
import type { MigrationEvent } from '../supervisor/index.js';
import type { PhaseSpan, PlanRunSummary, VmOutcome, VmRunRecord, WaveRecord } from './run-summary.js';

export interface RecordedVm {
  readonly key: string;
  /** What its events carry as `vm`. */
  readonly label: string;
  readonly wave: string;
  readonly mode: 'cold' | 'warm';
}

/** One VM in `plan status`: where it is now. */
export interface VmStatus {
  readonly key: string;
  readonly wave: string;
  readonly mode: 'cold' | 'warm';
  readonly state: 'pending' | 'running' | 'done' | 'failed' | 'skipped';
  /** The phase under way, 'waiting' or 'waiting for a slot' (a warm VM between rounds), or the last phase. */
  readonly phase?: string;
  readonly bytesDone: number;
  readonly bytesPlanned: number;
  readonly bytesPerSecond: number;
  readonly etaSeconds?: number;
  readonly lastError?: string;
  readonly startedAt?: string;
  readonly endedAt?: string;
  /** Done before this run: not started by it. */
  readonly finishedEarlier?: true;
}

export interface RunStatus {
  readonly version: 1;
  readonly plan: string;
  readonly runId: string;
  readonly pid: number;
  readonly logFile: string;
  readonly start: string;
  /** When this snapshot was taken; `plan status` tells a run that stopped without ending by it. */
  readonly updated: string;
  readonly ended: boolean;
  readonly vms: readonly VmStatus[];
}

interface DiskBytes {
  done: number;
  planned: number;
  written: number;
}

interface VmState {
  readonly vm: RecordedVm;
  state: VmStatus['state'];
  phases: PhaseSpan[];
  open?: { phase: string; start: string };
  /** Between phases without its in-flight slot (a warm VM between rounds): what it waits for. */
  waiting?: 'waiting' | 'waiting for a slot';
  /** Bytes of rounds before the one under way (warm), so the total keeps growing. */
  earlier: { copied: number; written: number };
  disks: Map<number, DiskBytes>;
  meter: RateMeter;
  lastError?: string;
  startedAt?: string;
  endedAt?: string;
  downtimeMs?: number;
  templateId?: number;
  vmId?: number;
  imageIds: readonly number[];
  host?: string;
  finishedEarlier?: true;
}

export class RunRecord {
  private readonly byLabel = new Map<string, VmState>();
  private readonly order: VmState[] = [];
  private readonly waveSpans = new Map<string, { start?: string; end?: string }>();

  constructor(
    private readonly run: { readonly plan: string; readonly runId: string; readonly logFile: string; readonly start: Date; readonly waves: readonly string[]; readonly budgets: PlanRunSummary['budgets'] },
    vms: readonly RecordedVm[],
    private readonly now: () => Date = () => new Date(),
  ) {
    for (const vm of vms) {
      const s: VmState = { vm, state: 'pending', phases: [], earlier: { copied: 0, written: 0 }, disks: new Map(), meter: new RateMeter(), imageIds: [] };
      this.byLabel.set(vm.label, s);
      this.order.push(s);
    }
  }

  /**
   * A VM the run does not start because an earlier run of the plan finished it: as its status
   * said, or as OpenNebula shows (`made`: the template and images that migration left).
   */
  finishedBefore(key: string, made?: { readonly templateId: number; readonly imageIds: readonly number[] }): void {
    const s = this.order.find((x) => x.vm.key === key);
    if (!s || s.state !== 'pending') return;
    s.state = 'done';
    s.finishedEarlier = true;
    if (made) {
      s.templateId = made.templateId;
      s.imageIds = [...made.imageIds];
    }
  }

  /** A VM the run did not reach: it was stopped first. */
  notReached(key: string): void {
    const s = this.order.find((x) => x.vm.key === key);
    if (s && s.state === 'pending') s.state = 'skipped';
  }

  readonly sink = (e: MigrationEvent): void => {
    if (!('vm' in e) || e.vm === undefined) return;
    const s = this.byLabel.get(e.vm);
    if (!s) return;
    const at = this.now().toISOString();
    switch (e.type) {
      case 'phase':
        if (e.state === 'start') {
          if (s.state === 'pending') {
            s.state = 'running';
            s.startedAt = at;
            this.waveStarted(s.vm.wave, at);
          }
          this.closeOpen(s, at, 'done');
          s.waiting = undefined;
          s.open = { phase: e.phase, start: at };
          if (e.phase === 'sync' || e.phase === 'final-sync' || e.phase === 'copy') this.newRound(s);
        } else {
          if (s.open?.phase === e.phase) this.closeOpen(s, at, e.state === 'failed' ? 'failed' : e.state === 'skipped' ? 'skipped' : 'done');
          else s.phases.push({ phase: e.phase, start: at, end: at, state: e.state === 'failed' ? 'failed' : e.state === 'skipped' ? 'skipped' : 'done' });
          if (e.state === 'failed' && e.detail) s.lastError = e.detail;
        }
        break;
      case 'disk': {
        s.disks.set(e.disk, { done: e.bytesDone, planned: e.bytesPlanned, written: e.bytesWritten });
        s.meter.add(this.copied(s), this.now().getTime());
        break;
      }
      case 'slot':
        s.waiting = e.state === 'released' ? 'waiting' : e.state === 'waiting' ? 'waiting for a slot' : undefined;
        break;
      case 'downtime':
        s.downtimeMs = e.totalMs;
        break;
      case 'log':
        if (e.level === 'error') s.lastError = e.message;
        break;
      case 'result':
        this.closeOpen(s, at, e.ok ? 'done' : 'failed');
        s.waiting = undefined;
        s.state = e.ok ? 'done' : 'failed';
        s.endedAt = at;
        s.imageIds = e.imageIds;
        if (e.templateId !== undefined) s.templateId = e.templateId;
        if (e.vmId !== undefined) s.vmId = e.vmId;
        if (!e.ok && e.error) s.lastError = e.error;
        if (e.host !== undefined) s.host = e.host;
        // A cold VM is off from the first step to the last: its downtime is the import.
        if (e.ok && s.vm.mode === 'cold') s.downtimeMs = e.durationMs;
        this.waveMaybeEnded(s.vm.wave, at);
        break;
      default:
        break;
    }
  };

  status(ended: boolean): RunStatus {
    return {
      version: 1,
      plan: this.run.plan,
      runId: this.run.runId,
      pid: process.pid,
      logFile: this.run.logFile,
      start: this.run.start.toISOString(),
      updated: this.now().toISOString(),
      ended,
      vms: this.order.map((s) => {
        const planned = this.planned(s);
        const done = this.copied(s);
        const rate = s.state === 'running' ? s.meter.rate() : 0;
        const eta = s.state === 'running' && planned > done ? s.meter.eta(planned - done) : undefined;
        return {
          key: s.vm.key,
          wave: s.vm.wave,
          mode: s.vm.mode,
          state: s.state,
          ...(s.waiting ? { phase: s.waiting } : s.open ? { phase: s.open.phase } : s.phases.length > 0 ? { phase: s.phases.at(-1)!.phase } : {}),
          bytesDone: done,
          bytesPlanned: planned,
          bytesPerSecond: Math.round(rate),
          ...(eta === undefined ? {} : { etaSeconds: Math.round(eta) }),
          ...(s.lastError === undefined ? {} : { lastError: s.lastError }),
          ...(s.startedAt === undefined ? {} : { startedAt: s.startedAt }),
          ...(s.endedAt === undefined ? {} : { endedAt: s.endedAt }),
          ...(s.finishedEarlier ? { finishedEarlier: true as const } : {}),
        };
      }),
    };
  }

  summary(): PlanRunSummary {
    const end = this.now().toISOString();
    const waves: WaveRecord[] = this.run.waves.map((name) => {
      const span = this.waveSpans.get(name);
      return { name, ...(span?.start ? { start: span.start } : {}), ...(span?.end ? { end: span.end } : {}), vms: this.order.filter((s) => s.vm.wave === name).map((s) => s.vm.key) };
    });
    const vms: VmRunRecord[] = this.order.map((s) => {
      const outcome: VmOutcome = s.state === 'done' ? 'done' : s.state === 'failed' ? 'failed' : s.state === 'skipped' ? 'skipped' : 'pending';
      const phases = s.open ? [...s.phases, { phase: s.open.phase, start: s.open.start, end, state: 'failed' as const }] : s.phases;
      const started = s.startedAt ? Date.parse(s.startedAt) : undefined;
      const ended = s.endedAt ? Date.parse(s.endedAt) : Date.parse(end);
      return {
        key: s.vm.key,
        wave: s.vm.wave,
        mode: s.vm.mode,
        ...(s.host === undefined ? {} : { host: s.host }),
        outcome,
        phases,
        bytesCopied: this.copied(s),
        bytesWritten: this.written(s),
        ...(s.downtimeMs === undefined ? {} : { downtimeMs: s.downtimeMs }),
        durationMs: started === undefined ? 0 : ended - started,
        ...(s.templateId === undefined ? {} : { templateId: s.templateId }),
        ...(s.vmId === undefined ? {} : { vmId: s.vmId }),
        imageIds: s.imageIds,
        ...(s.lastError === undefined || outcome === 'done' ? {} : { error: s.lastError }),
        ...(s.finishedEarlier ? { finishedEarlier: true as const } : {}),
      };
    });
    return { version: 1, plan: this.run.plan, runId: this.run.runId, start: this.run.start.toISOString(), end, budgets: this.run.budgets, waves, vms };
  }

  private closeOpen(s: VmState, at: string, state: PhaseSpan['state']): void {
    if (!s.open) return;
    s.phases.push({ phase: s.open.phase, start: s.open.start, end: at, state });
    s.open = undefined;
  }

  /** A new copy round: what the disks hold so far counts as earlier rounds' bytes. */
  private newRound(s: VmState): void {
    s.earlier = { copied: this.copied(s), written: this.written(s) };
    s.disks.clear();
  }

  private copied(s: VmState): number {
    let n = s.earlier.copied;
    for (const d of s.disks.values()) n += d.done;
    return n;
  }

  private written(s: VmState): number {
    let n = s.earlier.written;
    for (const d of s.disks.values()) n += d.written;
    return n;
  }

  private planned(s: VmState): number {
    let n = s.earlier.copied;
    for (const d of s.disks.values()) n += d.planned;
    return n;
  }

  private waveStarted(wave: string, at: string): void {
    const span = this.waveSpans.get(wave) ?? {};
    span.start ??= at;
    this.waveSpans.set(wave, span);
  }

  private waveMaybeEnded(wave: string, at: string): void {
    if (this.order.some((s) => s.vm.wave === wave && (s.state === 'pending' || s.state === 'running'))) return;
    const span = this.waveSpans.get(wave) ?? {};
    span.end = at;
    this.waveSpans.set(wave, span);
  }
}
