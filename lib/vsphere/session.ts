// A vSphere login session: service content, Login/Logout, re-login when the server expired the
// session, and a keep-alive that stops idle expiry while the client is connected. The password
// lives only in this object's closure and in the Login envelope, never in messages.

import { OneswapError } from '../errors/index.js';
import type { VSphereLogger } from './logger.js';
import type { SoapTransport } from './soap.js';
import type { Credentials, MoRef } from './types.js';
import { isFault } from './vim-fault.js';
import { moRef, text, type VimValue } from './vim-value.js';

export const SERVICE_INSTANCE: MoRef = { type: 'ServiceInstance', value: 'ServiceInstance' };

export interface ServiceContent {
  readonly rootFolder: MoRef;
  readonly propertyCollector: MoRef;
  readonly viewManager: MoRef;
  readonly sessionManager: MoRef;
  readonly about: {
    readonly apiVersion: string;
    readonly apiType: string;
    readonly fullName: string;
    readonly instanceUuid: string;
  };
}

export class Session {
  private readonly transport: SoapTransport;
  private readonly credentials: Credentials;
  private readonly logger: VSphereLogger | undefined;
  private content: ServiceContent | undefined;
  private pendingLogin: Promise<void> | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  /** Incremented at every login; session-scoped objects (container views) die with the session. */
  generation = 0;

  constructor(transport: SoapTransport, credentials: Credentials, logger?: VSphereLogger) {
    this.transport = transport;
    this.credentials = credentials;
    this.logger = logger;
  }

  /** For programs that log in on their own (nbdkit's vddk plugin); never logged. */
  get loginCredentials(): Credentials {
    return this.credentials;
  }

  get serviceContent(): ServiceContent {
    if (this.content === undefined) throw new OneswapError('internal', 'vSphere session used before open()');
    return this.content;
  }

  async open(): Promise<void> {
    const raw = await this.transport.callOne('RetrieveServiceContent', SERVICE_INSTANCE, [], { noReauth: true });
    this.content = readServiceContent(raw, this.transport.endpoint.host);
    this.transport.apiVersion = this.content.about.apiVersion;
    await this.login();
    this.transport.reauthenticate = (stale) => this.relogin(stale);
  }

  private async login(): Promise<void> {
    // A Login on a live cookie is refused (InvalidLogin), so a re-login starts cookieless.
    this.transport.cookie = undefined;
    try {
      await this.transport.call(
        'Login',
        this.serviceContent.sessionManager,
        [['userName', this.credentials.user], ['password', this.credentials.password]],
        { noReauth: true },
      );
    } catch (err) {
      if (isFault(err, 'InvalidLogin')) {
        throw new OneswapError('auth', `vCenter ${this.transport.endpoint.host} refused the login for user ${this.credentials.user}: wrong user name or password`);
      }
      throw err;
    }
    if (this.transport.cookie === undefined) {
      throw new OneswapError('remote', `vCenter ${this.transport.endpoint.host} accepted the login for user ${this.credentials.user} but set no vmware_soap_session cookie; check that this is a vCenter or ESXi SDK endpoint`);
    }
    this.generation++;
  }

  /** Logs in again unless another call already did since `staleCookie` was sent. */
  async relogin(staleCookie: string | undefined): Promise<void> {
    if (this.pendingLogin !== undefined) return this.pendingLogin;
    if (this.transport.cookie !== staleCookie) return;
    this.pendingLogin = this.login().finally(() => {
      this.pendingLogin = undefined;
    });
    return this.pendingLogin;
  }

  /** Calls CurrentTime every intervalMs so the server does not expire an idle session. */
  startKeepAlive(intervalMs: number): void {
    this.stopKeepAlive();
    if (intervalMs <= 0) return;
    this.keepAliveTimer = setInterval(() => {
      this.transport.call('CurrentTime', SERVICE_INSTANCE).catch((err: unknown) => {
        this.logger?.debug?.(`vSphere keep-alive failed: ${(err as Error).message}`);
      });
    }, intervalMs);
    // The keep-alive must never be what keeps the process alive.
    this.keepAliveTimer.unref();
  }

  stopKeepAlive(): void {
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = undefined;
  }

  async close(): Promise<void> {
    this.stopKeepAlive();
    this.transport.reauthenticate = undefined;
    if (this.content === undefined || this.transport.cookie === undefined) return;
    try {
      await this.transport.call('Logout', this.content.sessionManager, [], { noReauth: true });
    } catch (err) {
      // An expired session is as good as a closed one.
      if (!isFault(err, 'NotAuthenticated')) throw err;
    } finally {
      this.transport.cookie = undefined;
    }
  }
}

function readServiceContent(v: VimValue | undefined, host: string): ServiceContent {
  const need = (path: string): MoRef => {
    const r = moRef(v, path);
    if (r === undefined) throw new OneswapError('remote', `vCenter ${host} sent a service content without ${path}; check that this is a vCenter or ESXi SDK endpoint`);
    return r;
  };
  return {
    rootFolder: need('rootFolder'),
    propertyCollector: need('propertyCollector'),
    viewManager: need('viewManager'),
    sessionManager: need('sessionManager'),
    about: {
      apiVersion: text(v, 'about.apiVersion') ?? '6.5',
      apiType: text(v, 'about.apiType') ?? '',
      fullName: text(v, 'about.fullName') ?? '',
      instanceUuid: text(v, 'about.instanceUuid') ?? '',
    },
  };
}
