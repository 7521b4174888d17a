// The vSphere client oneswap's stages use: one object per vCenter (or ESXi) session.

import type { Readable } from 'node:stream';
import { OneswapError } from '../errors/index.js';
import { ChangeTracking } from './cbt.js';
import { DatastoreHttp } from './datastore-http.js';
import { endpointLabel, type Endpoint } from './endpoint.js';
import { ExportLeases, type ExportLease, type LeaseWaitOptions } from './export-lease.js';
import {
  listClusters,
  listDatacenters,
  listDatastores,
  listHosts,
  listNetworks,
  readInventory,
} from './inventory.js';
import type { VSphereLogger } from './logger.js';
import { PowerControl } from './power.js';
import { PropertyCollector } from './property-collector.js';
import { Session } from './session.js';
import { Snapshots, type CreateSnapshotOptions, type RemoveSnapshotOptions } from './snapshots.js';
import { SoapTransport } from './soap.js';
import { PolicyAgent } from './tls-agent.js';
import type {
  Cluster,
  Credentials,
  Datacenter,
  Datastore,
  Extent,
  Host,
  MoRef,
  Network,
  PowerState,
  Snapshot,
  TlsPolicy,
  VmDisk,
  VmFilter,
  VmQuery,
  VmSummary,
} from './types.js';
import { findVm, findVms, listVms, readVm, type FindVmOptions, type FoundVms } from './vm-inventory.js';

export interface LoginFacts {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** "AB:CD:…", as VDDK and nbdkit's vddk plugin take it. */
  readonly thumbprintSha1: string;
}

export interface ConnectOptions {
  readonly host: string;
  /** Default 443. */
  readonly port?: number;
  readonly credentials: Credentials;
  /** Default: verify against the system CAs. */
  readonly tls?: TlsPolicy;
  /** Bound on each SOAP call and on each HTTP response; default 60 s. */
  readonly timeoutMs?: number;
  /** Receives the insecure-TLS warning and debug traces. */
  readonly logger?: VSphereLogger;
  /** Interval of the session keep-alive call; default 10 min, 0 turns it off. */
  readonly keepAliveMs?: number;
  /** Parallel datastore range streams (sockets of the /folder pool); default 16. */
  readonly maxRangeStreams?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const DEFAULT_KEEPALIVE_MS = 10 * 60_000;
const DEFAULT_RANGE_STREAMS = 16;
/** SOAP calls are short; a few sockets serve task polls of many parallel migrations. */
const SOAP_SOCKETS = 8;

export class VSphereClient {
  private readonly endpoint: Endpoint;
  private readonly transport: SoapTransport;
  private readonly session: Session;
  private readonly pc: PropertyCollector;
  private readonly agents: readonly PolicyAgent[];
  private readonly snapshotOps: Snapshots;
  private readonly cbt: ChangeTracking;
  private readonly power: PowerControl;
  private readonly files: DatastoreHttp;
  private readonly rangeAgent: PolicyAgent;
  private readonly leases: ExportLeases;

  private constructor(endpoint: Endpoint, transport: SoapTransport, session: Session, soapAgent: PolicyAgent, rangeAgent: PolicyAgent, tls: TlsPolicy, timeoutMs: number) {
    this.endpoint = endpoint;
    this.transport = transport;
    this.session = session;
    this.pc = new PropertyCollector(transport, session);
    this.agents = [soapAgent, rangeAgent];
    this.snapshotOps = new Snapshots(transport, this.pc);
    this.cbt = new ChangeTracking(transport, this.pc);
    this.power = new PowerControl(transport, this.pc);
    this.files = new DatastoreHttp({ transport, agent: rangeAgent, timeoutMs });
    this.rangeAgent = rangeAgent;
    this.leases = new ExportLeases(transport, this.pc, tls, timeoutMs);
  }

  /** Connects, applies the TLS policy, logs in and starts the session keep-alive. */
  static async connect(options: ConnectOptions): Promise<VSphereClient> {
    const host = options.host.trim();
    const port = options.port ?? 443;
    if (host === '') throw new OneswapError('usage', 'no vCenter host given; pass --vcenter <host>');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new OneswapError('usage', `vCenter port ${port} is not a TCP port; pass a number from 1 to 65535`);
    const endpoint: Endpoint = { host, port };
    const tls = options.tls ?? { kind: 'verify' };
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (tls.kind === 'insecure') {
      options.logger?.warn(`TLS certificate verification is off for vCenter ${endpointLabel(endpoint)} (insecure): anyone on the path can read the session and the disks; pin the certificate with --thumbprint instead`);
    }
    const soapAgent = new PolicyAgent({ endpoint, tls, maxSockets: SOAP_SOCKETS, handshakeTimeoutMs: timeoutMs });
    const rangeAgent = new PolicyAgent({ endpoint, tls, maxSockets: options.maxRangeStreams ?? DEFAULT_RANGE_STREAMS, handshakeTimeoutMs: timeoutMs });
    const transport = new SoapTransport({ endpoint, agent: soapAgent, timeoutMs, ...(options.logger ? { logger: options.logger } : {}) });
    const session = new Session(transport, options.credentials, options.logger);
    try {
      await session.open();
    } catch (err) {
      soapAgent.destroy();
      rangeAgent.destroy();
      throw err;
    }
    session.startKeepAlive(options.keepAliveMs ?? DEFAULT_KEEPALIVE_MS);
    return new VSphereClient(endpoint, transport, session, soapAgent, rangeAgent, tls, timeoutMs);
  }

  /** The API version the server reports and the client speaks (SOAPAction urn:vim25/<version>). */
  get apiVersion(): string {
    return this.transport.apiVersion;
  }

  get host(): string {
    return this.endpoint.host;
  }

  get port(): number {
    return this.endpoint.port;
  }

  /**
   * What another program logging in to this vCenter (nbdkit's vddk or nfc plugin) needs: the
   * endpoint, the credentials, and the SHA-1 thumbprint of the certificate this client verified
   * under its TLS policy (VDDK pins SHA-1). The password is for a 0600 file, never for argv.
   */
  async loginFacts(signal?: AbortSignal): Promise<LoginFacts> {
    const lease = await this.rangeAgent.acquireRaw(signal);
    let sha1: string;
    try {
      sha1 = lease.socket.getPeerCertificate().fingerprint;
    } finally {
      this.rangeAgent.releaseRaw(lease, true);
    }
    const { user, password } = this.session.loginCredentials;
    return { host: this.endpoint.host, port: this.endpoint.port, user, password, thumbprintSha1: sha1 };
  }

  /** "VirtualCenter" for vCenter, "HostAgent" for a standalone ESXi. */
  get apiType(): string {
    return this.session.serviceContent.about.apiType;
  }

  async logout(): Promise<void> {
    try {
      await this.session.close();
    } finally {
      for (const agent of this.agents) agent.destroy();
    }
  }

  async datacenters(): Promise<Datacenter[]> {
    return listDatacenters(await readInventory(this.pc, false));
  }

  async clusters(): Promise<Cluster[]> {
    return listClusters(await readInventory(this.pc, false));
  }

  async hosts(): Promise<Host[]> {
    return listHosts(await readInventory(this.pc, false));
  }

  async datastores(): Promise<Datastore[]> {
    return listDatastores(await readInventory(this.pc, false));
  }

  async networks(): Promise<Network[]> {
    return listNetworks(await readInventory(this.pc, false));
  }

  /** VMs matching the filter, sorted by inventory path; a fixed number of round trips. */
  async vms(filter?: VmFilter): Promise<VmSummary[]> {
    return listVms(this.pc, filter);
  }

  /** A VM per query (or why none), with the datacenters and datastores: the round trips of one `findVm`. */
  async findVms(queries: readonly VmQuery[]): Promise<FoundVms> {
    return findVms(this.pc, queries, this.endpoint.host);
  }

  /** One VM by inventory path, instance/BIOS UUID or name; 'not-found' or 'conflict' otherwise. */
  async findVm(nameOrPathOrUuid: string, options: FindVmOptions = {}): Promise<VmSummary> {
    return findVm(this.pc, nameOrPathOrUuid, options, this.endpoint.host);
  }

  async vm(ref: MoRef): Promise<VmSummary> {
    return readVm(this.pc, ref, this.endpoint.host);
  }

  /** The VM's snapshots, depth-first, without disks. */
  async snapshots(vmRef: MoRef): Promise<Snapshot[]> {
    return this.snapshotOps.list(vmRef);
  }

  /** Creates a snapshot (memory off by default) and returns it with its frozen disks. */
  async createSnapshot(vmRef: MoRef, options: CreateSnapshotOptions): Promise<Snapshot> {
    return this.snapshotOps.create(vmRef, options);
  }

  async removeSnapshot(snapRef: MoRef, options?: RemoveSnapshotOptions): Promise<void> {
    return this.snapshotOps.remove(snapRef, options);
  }

  /** Disks from the snapshot's own config: the changeIds to store for the next delta. */
  async snapshotDisks(snapRef: MoRef): Promise<VmDisk[]> {
    return this.snapshotOps.disks(snapRef);
  }

  /** Areas to copy, merged and sorted: allocated ones for changeId "*", else changed since changeId. */
  async queryChangedDiskAreas(vmRef: MoRef, snapRef: MoRef | undefined, deviceKey: number, changeId: string, capacityBytes: number): Promise<Extent[]> {
    return this.cbt.queryChangedDiskAreas(vmRef, snapRef, deviceKey, changeId, capacityBytes);
  }

  async setChangeTracking(vmRef: MoRef, enabled: boolean): Promise<void> {
    return this.cbt.set(vmRef, enabled);
  }

  async powerState(vmRef: MoRef): Promise<PowerState> {
    return this.power.powerState(vmRef);
  }

  /** Guest shutdown through VMware Tools, then waits up to timeoutMs for poweredOff. */
  async shutdownGuest(vmRef: MoRef, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return this.power.shutdownGuest(vmRef, timeoutMs, signal);
  }

  async powerOff(vmRef: MoRef): Promise<void> {
    return this.power.powerOff(vmRef);
  }

  async powerOn(vmRef: MoRef): Promise<void> {
    return this.power.powerOn(vmRef);
  }

  /**
   * ExportVm: an export lease of a powered-off VM's disks, once it is ready (InvalidPowerState for
   * a running VM). Keep it alive with `progress`, end it with `complete` or `abort`.
   */
  async exportVm(vmRef: MoRef, options?: LeaseWaitOptions): Promise<ExportLease> {
    return this.leases.exportVm(vmRef, options);
  }

  /** ExportSnapshot: an export lease of a snapshot's disks (the VM may be running), once it is ready. */
  async exportSnapshot(snapRef: MoRef, options?: LeaseWaitOptions): Promise<ExportLease> {
    return this.leases.exportSnapshot(snapRef, options);
  }

  /** URL of a datastore file: dcPath is the datacenter's inventory path ("/DC0" or "DC0"). */
  datastoreUrl(dcPath: string, dsName: string, path: string): string {
    return this.files.url(dcPath, dsName, path);
  }

  /** Body of bytes [start, endExclusive) of a datastore file; fails rather than read a wrong range. */
  async openRange(url: string, start: number, endExclusive: number, signal?: AbortSignal): Promise<Readable> {
    return this.files.openRange(url, start, endExclusive, signal);
  }

  async head(url: string): Promise<{ size: number }> {
    return this.files.head(url);
  }

  /** A small text file (a VMDK descriptor); refuses anything over 1 MiB. */
  async getText(url: string): Promise<string> {
    return this.files.getText(url);
  }
}
