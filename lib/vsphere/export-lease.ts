// Export leases (HttpNfcLease): ExportVm of a powered-off VM, ExportSnapshot of a snapshot. The
// lease is waited for until `ready`; its `info` lists one device URL per disk, each served as one
// streamOptimized VMDK by the host's NFC service. A download is one GET of the whole disk (ESXi's
// NFC has no Range), to the host the client connected to where the URL says `*`, with the session
// cookie, over TLS pinned to the SHA-1 thumbprint the lease names. The lease is kept alive with
// HttpNfcLeaseProgress and ended with HttpNfcLeaseComplete, or HttpNfcLeaseAbort on failure.

import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import { endpointLabel, sendRequest, toConnectionError, type Endpoint } from './endpoint.js';
import type { PropertyCollector } from './property-collector.js';
import { readLocalizedFault, type SoapObject } from './soap-envelope.js';
import type { SoapTransport } from './soap.js';
import { formatThumbprint, normalizeHex, thumbprintMatches, type Thumbprint } from './thumbprint.js';
import { PolicyAgent, type PeerChecker } from './tls-agent.js';
import type { MoRef, TlsPolicy } from './types.js';
import { describeFault, VimFaultError } from './vim-fault.js';
import { bool, int, list, moRef, text, type VimValue } from './vim-value.js';

/** One file of a lease: a disk (or NVRAM and the like, `disk` false). */
export interface LeaseDevice {
  /** Opaque; names the device: ESXi "/vm-42/VirtualLsiLogicController0:0", the simulator "/vm-42/1000:0". */
  readonly key: string;
  /** As the lease gives it, host "*" included. */
  readonly url: string;
  readonly targetId: string;
  /** SHA-1 (colon-separated hex) of the certificate of the host serving `url`, when the lease gives one. */
  readonly sslThumbprint?: string;
  readonly disk: boolean;
  /** Bytes of the file, when the lease knows them (ESXi often does not for exports). */
  readonly fileSize?: number;
}

export interface ExportLeaseInfo {
  readonly devices: readonly LeaseDevice[];
  readonly totalDiskCapacityInKB: number;
  /** Seconds without a keep-alive (HttpNfcLeaseProgress) after which the server ends the lease. */
  readonly leaseTimeoutSec: number;
}

export type LeaseState = 'initializing' | 'ready' | 'done' | 'error';

export interface LeaseWaitOptions {
  /** Bound on waiting for `ready`; default 10 min (ESXi prepares a big VM's export for a while). */
  readonly readyTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** One download: the body, read once, and what it brought so far. */
export interface LeaseDownload {
  readonly body: AsyncIterable<Uint8Array>;
  /** Content-Length, when the server sent one. */
  readonly size: number | undefined;
  /** Bytes that came over the network so far. */
  readonly bytesReceived: number;
}

const READY_TIMEOUT_MS = 10 * 60_000;
/** A lease still initializing after this long gets keep-alives while it is waited for. */
const INIT_KEEPALIVE_AFTER_MS = 1000;
/** Leases that do not say their timeout get ESXi's default. */
const DEFAULT_LEASE_TIMEOUT_SEC = 300;

/** Starts export leases on the client's connection. */
export class ExportLeases {
  constructor(
    private readonly transport: SoapTransport,
    private readonly pc: PropertyCollector,
    private readonly tls: TlsPolicy,
    private readonly timeoutMs: number,
  ) {}

  /** ExportVm: a powered-off VM's disks (a running VM's are refused by vSphere: InvalidPowerState). */
  async exportVm(vm: MoRef, options: LeaseWaitOptions = {}): Promise<ExportLease> {
    return this.start('ExportVm', vm, `VM ${vm.value}`, options);
  }

  /** ExportSnapshot: a snapshot's disks, as they were when it was taken (the VM may run). */
  async exportSnapshot(snapshot: MoRef, options: LeaseWaitOptions = {}): Promise<ExportLease> {
    return this.start('ExportSnapshot', snapshot, `snapshot ${snapshot.value}`, options);
  }

  private async start(method: string, obj: MoRef, what: string, options: LeaseWaitOptions): Promise<ExportLease> {
    const call = `${method} of ${what} (vCenter ${endpointLabel(this.transport.endpoint)})`;
    const ref = moRef(await this.transport.callOne(method, obj));
    if (ref === undefined) throw new OneswapError('remote', `${call} returned no lease; check the vCenter`);
    const lease = new ExportLease(ref, this.transport, this.pc, this.tls, this.timeoutMs, `the export lease ${ref.value} of ${what}`);
    try {
      await lease.waitReady(options);
    } catch (err) {
      // A lease nobody will use must not hold the VM until it times out.
      await lease.abort(err instanceof Error ? err.message : undefined).catch(() => undefined);
      throw err;
    }
    return lease;
  }
}

export class ExportLease {
  private leaseInfo: ExportLeaseInfo | undefined;
  private readonly agents = new Map<string, PolicyAgent>();
  private ended = false;

  constructor(
    readonly ref: MoRef,
    private readonly transport: SoapTransport,
    private readonly pc: PropertyCollector,
    private readonly tls: TlsPolicy,
    private readonly timeoutMs: number,
    /** "the export lease session[...] of VM vm-42", for messages. */
    readonly what: string,
  ) {}

  /** The lease's device URLs and timeout (known once it is ready). */
  get info(): ExportLeaseInfo {
    if (this.leaseInfo === undefined) throw new OneswapError('internal', `${this.what} is not ready yet`);
    return this.leaseInfo;
  }

  /** The lease's state and, in state error, the server's message. */
  async state(): Promise<{ readonly state: LeaseState; readonly error?: string }> {
    const props = await this.pc.retrieveOne(this.ref, ['state', 'error']);
    const state = (text(props.get('state')) ?? 'initializing') as LeaseState;
    const fault = readLocalizedFault(props.get('error'));
    return fault === undefined ? { state } : { state, error: describeFault(fault) };
  }

  /** Polls the lease until it is ready (then reads its info); `error` is a failure with the lease's message. */
  async waitReady(options: LeaseWaitOptions = {}): Promise<void> {
    const timeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
    const started = Date.now();
    const deadline = started + timeoutMs;
    let delay = 50;
    for (;;) {
      const props = await this.pc.retrieveOne(this.ref, ['state', 'error', 'info']);
      const state = text(props.get('state'));
      if (state === 'ready') {
        this.leaseInfo = readLeaseInfo(props.get('info'), this.what);
        return;
      }
      if (state === 'error') {
        const fault = readLocalizedFault(props.get('error')) ?? { type: 'HttpNfcLeaseError', message: '', detail: undefined };
        throw new VimFaultError(`${this.what} failed: ${describeFault(fault)}`, fault);
      }
      if (state === 'done') throw new OneswapError('remote', `${this.what} ended before it was ready (state done)`);
      if (Date.now() >= deadline)
        throw new OneswapError('remote', `${this.what} is still ${state ?? 'initializing'} after ${Math.round(timeoutMs / 1000)} s; vCenter did not prepare the export`, {
          hint: 'check the VM\'s Recent Tasks in vCenter, then run again',
        });
      if (options.signal?.aborted) throw new OneswapError('interrupted', `stopped waiting for ${this.what}`);
      // The lease's timeout runs while it initializes too (its length is in the info, not known
      // yet): a long preparation is kept alive the same way, at the pace of the polls.
      if (Date.now() - started >= INIT_KEEPALIVE_AFTER_MS) await this.progress(0).catch(() => undefined);
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
      delay = Math.min(2000, Math.ceil(delay * 1.5));
    }
  }

  /** The keep-alive: tells the server how far the export is (0-100), which also restarts its timeout. */
  async progress(percent: number): Promise<void> {
    await this.transport.call('HttpNfcLeaseProgress', this.ref, [['percent', Math.max(0, Math.min(100, Math.floor(percent)))]]);
  }

  /** Ends the lease as a success; the connections of its downloads are closed. */
  async complete(): Promise<void> {
    this.ended = true;
    try {
      await this.transport.call('HttpNfcLeaseComplete', this.ref);
    } finally {
      this.close();
    }
  }

  /** Ends the lease as a failure, with `message` as its fault (the server shows it) when there is one. */
  async abort(message?: string): Promise<void> {
    this.ended = true;
    const fault: SoapObject | undefined =
      message === undefined ? undefined : { fault: { $type: 'SystemError', reason: message }, localizedMessage: message };
    try {
      await this.transport.call('HttpNfcLeaseAbort', this.ref, fault === undefined ? [] : [['fault', fault]]);
    } finally {
      this.close();
    }
  }

  /** Closes the download connections (complete and abort do it). */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  /**
   * One GET of a device URL, no Range: the whole disk as the server streams it. The host `*` is
   * the host the client connected to (and its port); the session cookie goes only there. The
   * serving certificate must have the lease's thumbprint (else the client's TLS policy applies).
   */
  async download(device: LeaseDevice, signal?: AbortSignal): Promise<LeaseDownload> {
    if (this.ended) throw new OneswapError('internal', `${this.what} has ended; ${device.targetId || device.key} cannot be downloaded`);
    const { endpoint, path, own } = this.resolve(device.url);
    const call = `GET ${device.targetId || path}`;
    const agent = this.agentFor(endpoint, device.sslThumbprint, device.targetId || device.key);
    const res = await sendRequest({
      endpoint,
      agent,
      method: 'GET',
      path,
      headers: own && this.transport.cookie !== undefined ? { Cookie: this.transport.cookie } : {},
      timeoutMs: this.timeoutMs,
      call,
      server: 'ESXi host',
      ...(signal === undefined ? {} : { signal }),
    });
    if (res.statusCode !== 200) {
      res.resume();
      throw this.statusError(res, endpoint, call);
    }
    const length = Number(res.headers['content-length']);
    return guardedBody(res, Number.isSafeInteger(length) ? length : undefined, endpoint, call, this.timeoutMs);
  }

  private resolve(url: string): { endpoint: Endpoint; path: string; own: boolean } {
    const client = this.transport.endpoint;
    const star = /^https:\/\/\*(?::\d+)?(\/.*)$/i.exec(url);
    // "*" is the host the client talks to, on the port it uses (a port next to "*" is the host's own).
    if (star !== null) return { endpoint: client, path: star[1]!, own: true };
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new OneswapError('remote', `${this.what} gave a device URL that is not a URL: ${url.slice(0, 200)}`);
    }
    if (u.protocol !== 'https:') throw new OneswapError('remote', `${this.what} gave a device URL that is not https: ${u.origin}`);
    const endpoint = { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port === '' ? 443 : Number(u.port) };
    const own = endpoint.host.toLowerCase() === client.host.toLowerCase() && endpoint.port === client.port;
    return { endpoint, path: u.pathname + u.search, own };
  }

  private agentFor(endpoint: Endpoint, sslThumbprint: string | undefined, file: string): PolicyAgent {
    const id = `${endpointLabel(endpoint)} ${sslThumbprint ?? ''}`;
    let agent = this.agents.get(id);
    if (agent === undefined) {
      const check = sslThumbprint === undefined || sslThumbprint === '' ? undefined : leaseChecker(endpoint, sslThumbprint, `${file} of ${this.what}`);
      agent = new PolicyAgent({ endpoint, tls: this.tls, maxSockets: 16, handshakeTimeoutMs: this.timeoutMs, ...(check === undefined ? {} : { check }) });
      this.agents.set(id, agent);
    }
    return agent;
  }

  private statusError(res: IncomingMessage, endpoint: Endpoint, call: string): OneswapError {
    const status = res.statusCode ?? 0;
    const where = `ESXi host ${endpointLabel(endpoint)}`;
    if (status === 404)
      return new OneswapError('not-found', `${where} has no file for ${call} of ${this.what} (HTTP 404): the lease has ended`, { hint: 'run again: a new export lease is taken' });
    if (status === 401 || status === 403)
      return new OneswapError('auth', `${where} refused ${call} of ${this.what} (HTTP ${status})`, { hint: 'give the vCenter user the VApp.Export privilege' });
    return new OneswapError('remote', `${where} answered HTTP ${status} to ${call} of ${this.what}; retry later`);
  }
}

function readLeaseInfo(v: VimValue | undefined, what: string): ExportLeaseInfo {
  if (v === undefined) throw new OneswapError('remote', `${what} is ready but has no info (device URLs); check the vCenter`);
  const devices = list(v, 'deviceUrl').map((d): LeaseDevice => {
    const thumb = text(d, 'sslThumbprint');
    const size = int(d, 'fileSize');
    return {
      key: text(d, 'key') ?? '',
      url: text(d, 'url') ?? '',
      targetId: text(d, 'targetId') ?? '',
      ...(thumb === undefined || thumb === '' ? {} : { sslThumbprint: thumb }),
      disk: bool(d, 'disk') ?? true,
      ...(size === undefined || size <= 0 ? {} : { fileSize: size }),
    };
  });
  return {
    devices,
    totalDiskCapacityInKB: int(v, 'totalDiskCapacityInKB') ?? 0,
    leaseTimeoutSec: int(v, 'leaseTimeout') || DEFAULT_LEASE_TIMEOUT_SEC,
  };
}

/** The serving certificate must be the one the lease names (SHA-1, or SHA-256 where given). */
function leaseChecker(endpoint: Endpoint, sslThumbprint: string, what: string): PeerChecker {
  const hex = normalizeHex(sslThumbprint);
  const pin: Thumbprint | undefined = /^[0-9a-f]{40}$/.test(hex) ? { algorithm: 'sha1', hex } : /^[0-9a-f]{64}$/.test(hex) ? { algorithm: 'sha256', hex } : undefined;
  const where = `ESXi host ${endpointLabel(endpoint)}`;
  return (socket) => {
    if (pin === undefined) return new OneswapError('remote', `the lease names the thumbprint "${sslThumbprint.slice(0, 100)}" for ${what}, which is not a SHA-1 or SHA-256 fingerprint`);
    const cert = socket.getPeerCertificate();
    if (!cert?.fingerprint) return new OneswapError('connection', `${where} presented no certificate for ${what}; the lease's thumbprint cannot be checked`);
    if (thumbprintMatches(pin, cert.fingerprint256, cert.fingerprint)) return undefined;
    const shown = pin.algorithm === 'sha256' ? cert.fingerprint256 : cert.fingerprint;
    return new OneswapError(
      'connection',
      `${where} presented a certificate with ${pin.algorithm.toUpperCase()} thumbprint ${formatThumbprint(shown)}, not the ${formatThumbprint(pin.hex)} the export lease names for ${what}; nothing was downloaded`,
      { hint: 'something between oneswap and the host answers in its place (a proxy?), or the host\'s certificate changed during the export: check, then run again' },
    );
  };
}

/**
 * The body, counted; a cut (the connection closed before its length), a stall (nothing for
 * timeoutMs while the reader waits) or a socket error fail it with a 'connection' error.
 * Stopping the iteration early closes the connection.
 */
function guardedBody(res: IncomingMessage, size: number | undefined, endpoint: Endpoint, call: string, timeoutMs: number): LeaseDownload {
  const where = `ESXi host ${endpointLabel(endpoint)}`;
  const state = { received: 0, waiting: false };
  const cut = (): OneswapError =>
    new OneswapError('connection', `${where} closed the connection after ${state.received}${size === undefined ? '' : ` of ${size}`} bytes of ${call}`);
  async function* body(): AsyncGenerator<Uint8Array> {
    let seen = -1;
    let stalled = false;
    const check = (): void => {
      if (state.waiting && state.received === seen) {
        stalled = true;
        res.destroy();
        return;
      }
      seen = state.received;
      timer.refresh();
    };
    const timer = setTimeout(check, timeoutMs).unref();
    const it = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    try {
      for (;;) {
        let r: IteratorResult<Buffer>;
        state.waiting = true;
        try {
          r = await it.next();
        } catch (err) {
          if (stalled) throw new OneswapError('connection', `${where} stopped sending ${call} for ${Math.round(timeoutMs / 1000)} s after ${state.received} bytes`);
          if (err instanceof OneswapError) throw err;
          if ((err as { code?: string }).code === 'ECONNRESET' || /aborted/i.test((err as Error).message)) throw cut();
          throw toConnectionError(err, endpoint, call);
        } finally {
          state.waiting = false;
        }
        if (r.done === true) break;
        state.received += r.value.length;
        yield r.value;
      }
      if (!res.complete || (size !== undefined && state.received !== size)) throw cut();
    } finally {
      clearTimeout(timer);
      if (!res.complete) res.destroy();
    }
  }
  return {
    body: body(),
    size,
    get bytesReceived() {
      return state.received;
    },
  };
}
