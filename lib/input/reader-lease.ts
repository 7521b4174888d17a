// The 'lease' disk reader: an NFC export lease of one VM state (ExportVm of a powered-off VM,
// ExportSnapshot of a running VM's snapshot). Each disk arrives as one streamOptimized VMDK
// stream without Range; copyInto decodes it on the fly into the planned areas
// (decodeVmdkStream). The session keeps the lease alive with HttpNfcLeaseProgress (the share of
// bytes streamed over all disks), completes it when the caller says all disks succeeded, and
// aborts it on a failure, on the signal, or when a keep-alive fails. A lease that expires in the
// middle of a disk fails that disk's copy with one line that says so.

import { OneswapError, describeError, type ErrorKind } from '../errors/index.js';
import type { CopyStats } from '../copy/index.js';
import type { ExportLease, LeaseDevice, LeaseDownload, MoRef, VmDisk, VSphereClient } from '../vsphere/index.js';
import type { StreamCopyOptions, StreamReading } from './disk-reader.js';
import { decodeVmdkStream } from './vmdk-decode.js';

/** The VM state a lease exports. */
export type LeaseSource = { readonly vm: MoRef; readonly snapshot?: undefined } | { readonly snapshot: MoRef; readonly vm?: undefined };

export interface OpenLeaseOptions {
  /** The VM's name, for messages. */
  readonly vmName: string;
  /** Ctrl-C: aborts the lease (and the copies running on it). */
  readonly signal?: AbortSignal;
  /** Bound on waiting for the lease to be ready (default: the client's, 10 min). */
  readonly readyTimeoutMs?: number;
  /** Keep-alive interval; default min(60 s, leaseTimeout / 3), at least 0.5 s. */
  readonly keepAliveMs?: number;
}

export interface LeaseSession {
  readonly lease: ExportLease;
  /** A stream reading per requested disk, by device key. */
  readonly disks: ReadonlyMap<number, StreamReading>;
  /** Ends the lease as a success: call it once every disk's copy succeeded. */
  complete(): Promise<void>;
  /** Ends the lease as a failure (running copies stop); safe to call twice and after complete. */
  abort(reason?: unknown): Promise<void>;
}

/** Opens an export lease of `source` and matches its device URLs to `disks` (by controller and unit). */
export async function openLease(client: VSphereClient, source: LeaseSource, disks: readonly VmDisk[], options: OpenLeaseOptions): Promise<LeaseSession> {
  options.signal?.throwIfAborted();
  const wait = { ...(options.readyTimeoutMs === undefined ? {} : { readyTimeoutMs: options.readyTimeoutMs }), ...(options.signal ? { signal: options.signal } : {}) };
  const lease = source.snapshot !== undefined ? await client.exportSnapshot(source.snapshot, wait) : await client.exportVm(source.vm, wait);
  let matched: Array<{ disk: VmDisk; device: LeaseDevice }>;
  try {
    matched = disks.map((disk) => ({ disk, device: deviceFor(disk, lease.info.devices, disks.length, options.vmName) }));
  } catch (err) {
    await lease.abort(describeError(err)).catch(() => undefined);
    throw err;
  }
  return new Session(lease, matched, options);
}

/** Where a disk is in the lease: its device URL's key ends with "<controller>:<unit>". */
function deviceFor(disk: VmDisk, devices: readonly LeaseDevice[], wanted: number, vmName: string): LeaseDevice {
  const files = devices.filter((d) => d.disk);
  const controllers = new Set([String(disk.controller.key), `${disk.controller.model}${disk.controller.busNumber}`]);
  const found = files.filter((d) => {
    const m = /\/([^/]+):(\d+)$/.exec(d.key);
    return m !== null && Number(m[2]) === disk.unitNumber && controllers.has(m[1]!);
  });
  if (found.length === 1) return found[0]!;
  // A single disk wanted from a lease of a single disk is that disk, whatever its key says.
  if (found.length === 0 && files.length === 1 && wanted === 1) return files[0]!;
  throw new OneswapError(
    'remote',
    `the export lease of VM ${vmName} has ${found.length === 0 ? 'no' : 'more than one'} device URL for disk ${disk.fileName} (controller ${disk.controller.key}, unit ${disk.unitNumber}); its keys: ${files.map((d) => d.key).join(', ') || 'none'}`,
  );
}

/** One disk's place in the session. */
interface DiskState {
  readonly disk: VmDisk;
  readonly device: LeaseDevice;
  /** "disk [ds] vm/vm.vmdk of VM web01" */
  readonly label: string;
  started: boolean;
  running: boolean;
  finished: boolean;
  download: LeaseDownload | undefined;
  /** Share of the disk done, 0..1, from the decode's progress when the file size is unknown. */
  decoded: number;
}

const MIN_KEEPALIVE_MS = 500;
const MAX_KEEPALIVE_MS = 60_000;
/** How long the lease's state is asked for after a cut stream. */
const STATE_CHECK_MS = 5000;

class Session implements LeaseSession {
  readonly disks: ReadonlyMap<number, StreamReading>;
  private readonly states: DiskState[];
  private readonly stop = new AbortController();
  private readonly readyAt = Date.now();
  private lastKeepAlive = Date.now();
  private readonly keepAliveMs: number;
  private timer: NodeJS.Timeout | undefined;
  private ended: 'complete' | 'abort' | undefined;
  /** Why the session stopped on its own (a keep-alive failed), for the copies it stopped. */
  private failure: { readonly cause: unknown } | undefined;
  private readonly onSignal: () => void;

  constructor(
    readonly lease: ExportLease,
    matched: ReadonlyArray<{ disk: VmDisk; device: LeaseDevice }>,
    private readonly options: OpenLeaseOptions,
  ) {
    this.states = matched.map(({ disk, device }) => ({
      disk,
      device,
      label: `disk ${disk.fileName} of VM ${options.vmName}`,
      started: false,
      running: false,
      finished: false,
      download: undefined,
      decoded: 0,
    }));
    this.disks = new Map(
      this.states.map((s): [number, StreamReading] => [s.disk.key, { access: 'stream', reader: 'lease', name: s.disk.fileName, copyInto: (opts) => this.copy(s, opts) }]),
    );
    this.keepAliveMs = options.keepAliveMs ?? Math.max(MIN_KEEPALIVE_MS, Math.min(MAX_KEEPALIVE_MS, (lease.info.leaseTimeoutSec * 1000) / 3));
    this.onSignal = () => void this.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', this.onSignal, { once: true });
    this.schedule();
  }

  async complete(): Promise<void> {
    if (this.ended === 'complete') return;
    if (this.ended === 'abort') throw new OneswapError('internal', `the export lease of VM ${this.options.vmName} was aborted; it cannot be completed`);
    const running = this.states.find((s) => s.running);
    if (running !== undefined) throw new OneswapError('internal', `the export lease of VM ${this.options.vmName} cannot be completed while ${running.label} is copied`);
    this.end('complete');
    await this.lease.complete();
  }

  async abort(reason?: unknown): Promise<void> {
    if (this.ended !== undefined) return;
    this.end('abort');
    const why = reason === undefined ? new OneswapError('interrupted', `the export lease of VM ${this.options.vmName} was aborted`) : reason;
    this.stop.abort(why);
    try {
      await this.lease.abort(describeError(why));
    } catch {
      // An expired or already ended lease cannot be aborted: it is over all the same.
    }
  }

  private end(how: 'complete' | 'abort'): void {
    this.ended = how;
    clearTimeout(this.timer);
    this.options.signal?.removeEventListener('abort', this.onSignal);
  }

  // ---- keep-alive ----

  private schedule(): void {
    this.timer = setTimeout(() => void this.keepAlive(), this.keepAliveMs);
    this.timer.unref();
  }

  private async keepAlive(): Promise<void> {
    if (this.ended !== undefined) return;
    try {
      await this.lease.progress(this.percent());
      this.lastKeepAlive = Date.now();
    } catch (err) {
      if (this.ended !== undefined) return;
      // The lease is over (expired, or ended on the server): every copy on it stops.
      this.failure = { cause: err };
      await this.abort(err);
      return;
    }
    if (this.ended === undefined) this.schedule();
  }

  /** Share of the requested disks streamed, by capacity: bytes received of the file's size where known, else the decode's place. */
  private percent(): number {
    let done = 0;
    let total = 0;
    for (const s of this.states) {
      const weight = Math.max(1, s.disk.capacityBytes);
      total += weight;
      if (s.finished) done += weight;
      else if (s.download !== undefined && s.device.fileSize !== undefined) done += weight * Math.min(1, s.download.bytesReceived / s.device.fileSize);
      else done += weight * s.decoded;
    }
    return total === 0 ? 0 : Math.min(99, Math.floor((100 * done) / total));
  }

  // ---- one disk ----

  private async copy(s: DiskState, opts: StreamCopyOptions): Promise<CopyStats> {
    if (s.started) throw new OneswapError('internal', `${s.label} was already read from its export lease: a stream is read once`);
    s.started = true;
    const started = Date.now();
    if (this.ended !== undefined) throw this.stopped(s, opts);
    s.running = true;
    const signal = AbortSignal.any([opts.signal, this.stop.signal]);
    try {
      s.download = await this.lease.download(s.device, signal);
      const stats = await decodeVmdkStream(s.download.body, {
        ...opts,
        name: s.label,
        signal,
        onProgress: (p) => {
          s.decoded = p.bytesPlanned === 0 ? 1 : p.bytesDone / p.bytesPlanned;
          opts.onProgress?.(p);
        },
      });
      s.finished = true;
      return {
        bytesPlanned: stats.bytesPlanned,
        bytesRead: stats.bytesRead,
        bytesWritten: stats.bytesWritten,
        bytesZero: Math.max(0, stats.bytesPlanned - stats.bytesWritten),
        requests: 1,
        retries: 0,
        durationMs: Date.now() - started,
      };
    } catch (err) {
      const told = await this.explain(s, opts, err);
      // The lease cannot serve this disk again: it ends with the reason.
      await this.abort(told);
      throw told;
    } finally {
      s.running = false;
    }
  }

  /** What a stopped copy says: the caller's reason, the lease's end, or the failure as it came. */
  private async explain(s: DiskState, opts: StreamCopyOptions, err: unknown): Promise<unknown> {
    if (opts.signal.aborted) return opts.signal.reason;
    if (this.ended !== undefined) return this.stopped(s, opts);
    if (!(err instanceof OneswapError) || err.kind !== 'connection') return err;
    // A cut stream: the lease expired when no keep-alive got through within its timeout, or the
    // server says it is over.
    const silent = Date.now() - this.lastKeepAlive;
    let serverSays: string | undefined;
    if (silent <= this.lease.info.leaseTimeoutSec * 1000) {
      serverSays = await Promise.race([
        this.lease.state().then(
          (st) => (st.state === 'error' || st.state === 'done' ? (st.error ?? `its state is ${st.state}`) : undefined),
          (e: unknown) => describeError(e),
        ),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), STATE_CHECK_MS).unref()),
      ]);
      if (serverSays === undefined) return new OneswapError('connection', `the export stream of ${s.label} was cut: ${err.message}`, { hint: 'run the copy again', cause: err });
    }
    const what = serverSays === undefined ? `no keep-alive got through for ${Math.round(silent / 1000)} s and the stream was cut` : `the server ended it (${serverSays})`;
    return this.expired(s, 'connection', what, err);
  }

  /** A copy the session stopped: by the signal, or because the lease expired. */
  private stopped(s: DiskState, opts: StreamCopyOptions): unknown {
    if (this.failure === undefined) return this.stop.signal.reason ?? opts.signal.reason ?? new OneswapError('interrupted', `the export lease of VM ${this.options.vmName} was aborted`);
    const cause = this.failure.cause;
    const kind: ErrorKind = cause instanceof OneswapError && cause.kind !== 'internal' ? cause.kind : 'remote';
    return this.expired(s, kind, `the keep-alive failed: ${cause instanceof OneswapError ? cause.message : describeError(cause)}`, cause);
  }

  private expired(s: DiskState, kind: ErrorKind, what: string, cause: unknown): OneswapError {
    const received = s.download === undefined ? '' : `, ${s.download.bytesReceived}${s.device.fileSize === undefined ? '' : ` of ${s.device.fileSize}`} bytes had arrived`;
    return new OneswapError(
      kind,
      `the export lease for ${s.label} expired after ${Math.round((Date.now() - this.readyAt) / 1000)} s${received}: ${what}`,
      {
        hint: `a keep-alive (HttpNfcLeaseProgress every ${Math.round(this.keepAliveMs / 100) / 10} s) must reach vCenter within the lease's ${this.lease.info.leaseTimeoutSec} s timeout: check the connection to vCenter and how busy it is, then run again`,
        cause,
      },
    );
  }
}
