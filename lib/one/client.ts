// The typed OpenNebula client: one method per oned call oneswap makes. Every optional parameter is
// sent explicitly (reference §2.4: older servers read some of them only in pairs), ints as <int>,
// flags as <boolean>, templates in the XML syntax.

import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import {
  parseDatastore,
  parseDatastorePool,
  parseImage,
  parseImagePool,
  parseMarketplace,
  parseSystemConfig,
  parseUser,
  parseVm,
  parseVmPool,
  parseVmTemplate,
  parseVmTemplatePool,
  parseVnet,
  parseVnetPool,
  type ImageStateName,
  type ImageTypeName,
  type OneDatastore,
  type OneImage,
  type OneMarketplace,
  type OneTemplate,
  type OneUser,
  type OneVm,
  type OneVnet,
} from './documents.js';
import { OneApiError, OneErrorCode, oneLine, replyValue } from './errors.js';
import { resolveCredentials, resolveEndpoint, resolveTimeoutMs, resolveTls, type Credentials } from './session.js';
import type { Template } from './template.js';
import { XmlRpcClient, type XmlRpcParam, type XmlRpcValue } from './xmlrpc.js';

export interface ConnectOptions {
  /** Default: $ONE_XMLRPC, ~/.one/one_endpoint, /var/lib/one/.one/one_endpoint, http://localhost:2633/RPC2. */
  readonly endpoint?: string;
  /** `user:password`. Default: the file named by $ONE_AUTH, ~/.one/one_auth, /var/lib/one/.one/one_auth. */
  readonly secret?: string;
  /** Per call. Default: $ONE_XMLRPC_TIMEOUT seconds, else 30 s. */
  readonly timeoutMs?: number;
  /** Where to resolve the defaults from (tests): environment and the system ~/.one directory. */
  readonly env?: NodeJS.ProcessEnv;
  readonly systemDir?: string;
}

/** Pool filters of `one.*pool.info`. */
export const PoolFilter = { ALL: -2, MINE: -3, MINE_AND_GROUPS: -1, PRIMARY_GROUP: -4 } as const;

export type VmAction =
  | 'terminate' | 'terminate-hard' | 'undeploy' | 'undeploy-hard' | 'hold' | 'release' | 'stop' | 'suspend'
  | 'resume' | 'reboot' | 'reboot-hard' | 'resched' | 'unresched' | 'poweroff' | 'poweroff-hard';

export interface WaitForImageOptions {
  /** States that end the wait; default READY. ERROR ends it with an exception unless listed here. */
  readonly until?: readonly ImageStateName[];
  /** Default 10 minutes. */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly signal?: AbortSignal;
}

export interface InstantiateOptions {
  /** '' lets oned pick the name. */
  readonly name?: string;
  readonly hold?: boolean;
  /** Merged into the template for this VM only. */
  readonly extra?: Template;
  /** Clone the template and its images first, so the VM owns persistent copies. */
  readonly persistent?: boolean;
}

// Large pools are read in pages so one reply never has to hold thousands of objects.
const PAGE_SIZE = 500;
const VM_STATE_ANY_BUT_DONE = -1;

export class OneClient {
  /** The endpoint, as shown in messages (no user:password@). */
  readonly endpoint: string;
  /** Who the credentials belong to, as oned answered at connect time. */
  readonly user: OneUser;
  readonly #rpc: XmlRpcClient;
  readonly #credentials: Credentials;

  private constructor(rpc: XmlRpcClient, credentials: Credentials, user: OneUser) {
    this.#rpc = rpc;
    this.#credentials = credentials;
    this.endpoint = rpc.displayEndpoint;
    this.user = user;
  }

  /**
   * Resolves endpoint and credentials as the `one*` commands do, then makes one cheap authenticated
   * call so that a wrong endpoint or password fails here, not in the middle of a migration.
   */
  static async connect(options: ConnectOptions = {}): Promise<OneClient> {
    const where = { env: options.env ?? process.env, ...(options.systemDir ? { systemDir: options.systemDir } : {}) };
    const endpoint = resolveEndpoint(options.endpoint, where);
    const credentials = resolveCredentials(options.secret, where);
    const rpc = new XmlRpcClient({
      endpoint: endpoint.value,
      timeoutMs: resolveTimeoutMs(options.timeoutMs, where),
      tls: resolveTls(where),
    });
    try {
      const reply = await rpc.call('one.user.info', [credentials.value.session, -1, false]);
      const user = parseUser(expectString('one.user.info', replyValue('one.user.info', reply)));
      return new OneClient(rpc, credentials.value, user);
    } catch (err) {
      rpc.close();
      if (err instanceof OneApiError && err.code === OneErrorCode.AUTHENTICATION) {
        throw new OneApiError({
          kind: 'auth',
          message: `OpenNebula at ${rpc.displayEndpoint} refused the credentials of user ${credentials.value.user}: ${err.message}`,
          method: err.method,
          code: err.code,
          remoteMessage: err.remoteMessage,
          hint: `check the password of ${credentials.value.user}, taken from ${credentials.from === 'option' ? 'the command line or configuration' : credentials.from}`,
        });
      }
      throw err;
    }
  }

  /** Drops idle connections. */
  close(): void {
    this.#rpc.close();
  }

  /** Any oned method not wrapped below: the session goes first, the success value comes back. */
  async call(method: string, params: readonly XmlRpcParam[], signal?: AbortSignal): Promise<XmlRpcValue> {
    const reply = await this.#rpc.call(method, [this.#credentials.session, ...params], signal ? { signal } : {});
    return replyValue(method, reply);
  }

  // --- system and users ---------------------------------------------------------------------------

  async version(): Promise<string> {
    return this.#string('one.system.version', []);
  }

  async whoami(): Promise<OneUser> {
    return parseUser(await this.#string('one.user.info', [-1, false]));
  }

  /** oned.conf as the caller may see it (full for group oneadmin): DS_MAD_CONF, DATASTORE_LOCATION … */
  async systemConfig(): Promise<Template> {
    return parseSystemConfig(await this.#string('one.system.config', []));
  }

  // --- datastores ---------------------------------------------------------------------------------

  async datastore(id: number): Promise<OneDatastore> {
    return parseDatastore(await this.#string('one.datastore.info', [id, false]));
  }

  async datastores(): Promise<OneDatastore[]> {
    return parseDatastorePool(await this.#string('one.datastorepool.info', []));
  }

  // --- images -------------------------------------------------------------------------------------

  /** Returns the new image id. `skipCapacityCheck` is honoured for admins only (oned ignores it otherwise). */
  async imageAllocate(template: Template, datastoreId: number, skipCapacityCheck = false): Promise<number> {
    return this.#int('one.image.allocate', [template.toXml(), datastoreId, skipCapacityCheck]);
  }

  async image(id: number, signal?: AbortSignal): Promise<OneImage> {
    return parseImage(await this.#string('one.image.info', [id, false], signal));
  }

  async images(filter: number = PoolFilter.ALL): Promise<OneImage[]> {
    return this.#pool('one.imagepool.info', filter, parseImagePool);
  }

  /** `force` (6.8+) also removes LOCKED images; deletion itself finishes asynchronously. */
  async imageDelete(id: number, force = false): Promise<void> {
    await this.call('one.image.delete', [id, force]);
  }

  async imageUpdate(id: number, template: Template, mode: 'replace' | 'merge'): Promise<void> {
    await this.call('one.image.update', [id, template.toXml(), mode === 'merge' ? 1 : 0]);
  }

  async imagePersistent(id: number, persistent: boolean): Promise<void> {
    await this.call('one.image.persistent', [id, persistent]);
  }

  /** −1 keeps the current user or group. */
  async imageChown(id: number, uid: number, gid: number): Promise<void> {
    await this.call('one.image.chown', [id, uid, gid]);
  }

  async imageChtype(id: number, type: ImageTypeName): Promise<void> {
    await this.call('one.image.chtype', [id, type]);
  }

  /**
   * Polls until the image reaches one of `until` (default READY). ERROR throws with the driver's
   * message from TEMPLATE/ERROR; so does a timeout, naming the state it was stuck in.
   */
  async waitForImage(id: number, options: WaitForImageOptions = {}): Promise<OneImage> {
    const until = options.until ?? ['READY'];
    const timeoutMs = options.timeoutMs ?? 600_000;
    // A placeholder is usually READY within a fraction of a second: poll fast first, then back
    // off to pollMs so a slow driver does not cost a call every 100 ms.
    const pollMs = options.pollMs ?? 1000;
    let intervalMs = Math.min(100, pollMs);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const image = await this.image(id, options.signal);
      if ((until as readonly string[]).includes(image.stateName)) return image;
      if (image.stateName === 'ERROR') {
        const why = oneLine(image.template.get('ERROR') ?? '') || 'no ERROR message in its template';
        throw new OneswapError('remote', `image ${id} (${image.name}) failed in datastore ${image.datastoreId}: ${why}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new OneswapError(
          'remote',
          `image ${id} (${image.name}) is still ${image.stateName} after ${Math.round(timeoutMs / 1000)} s, waiting for ${until.join(' or ')}`,
          { hint: 'the datastore driver may be stuck; see oned.log on the frontend' },
        );
      }
      try {
        await sleep(Math.min(intervalMs, left), undefined, options.signal ? { signal: options.signal } : {});
        intervalMs = Math.min(intervalMs * 2, pollMs);
      } catch {
        throw new OneswapError('interrupted', `stopped waiting for image ${id} (${image.name})`);
      }
    }
  }

  // --- VM templates -------------------------------------------------------------------------------

  async templateAllocate(template: Template): Promise<number> {
    return this.#int('one.template.allocate', [template.toXml()]);
  }

  /** `extended` merges the images' information into the DISKs. */
  async template(id: number, extended = false): Promise<OneTemplate> {
    return parseVmTemplate(await this.#string('one.template.info', [id, extended, false]));
  }

  async templates(filter: number = PoolFilter.ALL): Promise<OneTemplate[]> {
    return this.#pool('one.templatepool.info', filter, parseVmTemplatePool);
  }

  async templateUpdate(id: number, template: Template, mode: 'replace' | 'merge'): Promise<void> {
    await this.call('one.template.update', [id, template.toXml(), mode === 'merge' ? 1 : 0]);
  }

  /** `recursive` also deletes the images of its DISKs. */
  async templateDelete(id: number, recursive = false): Promise<void> {
    await this.call('one.template.delete', [id, recursive]);
  }

  /** Returns the new VM id. All five parameters always go out (6.10 reads hold and extra together). */
  async templateInstantiate(id: number, options: InstantiateOptions = {}): Promise<number> {
    return this.#int('one.template.instantiate', [
      id,
      options.name ?? '',
      options.hold ?? false,
      options.extra?.toXml() ?? '',
      options.persistent ?? false,
    ]);
  }

  async templateChown(id: number, uid: number, gid: number): Promise<void> {
    await this.call('one.template.chown', [id, uid, gid]);
  }

  // --- VMs ----------------------------------------------------------------------------------------

  async vmInfo(id: number): Promise<OneVm> {
    return parseVm(await this.#string('one.vm.info', [id, false]));
  }

  /** VMs in any state but DONE. */
  async vms(filter: number = PoolFilter.ALL): Promise<OneVm[]> {
    return this.#pool('one.vmpool.info', filter, parseVmPool, [VM_STATE_ANY_BUT_DONE]);
  }

  async vmAction(action: VmAction, id: number): Promise<void> {
    await this.call('one.vm.action', [action, id]);
  }

  // --- marketplaces -------------------------------------------------------------------------------

  async marketplace(id: number): Promise<OneMarketplace> {
    return parseMarketplace(await this.#string('one.market.info', [id, false]));
  }

  /**
   * Enabling a DISABLED marketplace makes oned monitor it at once (the reply does not wait for
   * that monitor); enabling an enabled one does nothing; disabling drops every app it lists.
   */
  async marketplaceEnable(id: number, enable: boolean): Promise<void> {
    await this.call('one.market.enable', [id, enable]);
  }

  // --- virtual networks ---------------------------------------------------------------------------

  async vnet(id: number): Promise<OneVnet> {
    return parseVnet(await this.#string('one.vn.info', [id, false]));
  }

  /** Pool listings carry address ranges but no lease lists; `vnet(id)` has those. */
  async vnets(filter: number = PoolFilter.ALL): Promise<OneVnet[]> {
    return this.#pool('one.vnpool.info', filter, parseVnetPool);
  }

  /** `ar` holds one AR vector, e.g. `AR = [ TYPE = "ETHER", MAC = "…", SIZE = "1" ]`. */
  async vnetAddAr(id: number, ar: Template): Promise<void> {
    await this.call('one.vn.add_ar', [id, ar.toXml()]);
  }

  /** Removes address range `arId`; refused while it has leases in use. */
  async vnetRemoveAr(id: number, arId: number): Promise<void> {
    await this.call('one.vn.rm_ar', [id, arId]);
  }

  // --- plumbing -----------------------------------------------------------------------------------

  async #string(method: string, params: readonly XmlRpcParam[], signal?: AbortSignal): Promise<string> {
    return expectString(method, await this.call(method, params, signal));
  }

  async #int(method: string, params: readonly XmlRpcParam[]): Promise<number> {
    const value = await this.call(method, params);
    if (typeof value !== 'number') throw new OneswapError('remote', `OpenNebula answered ${method} with ${typeof value} where an id was expected`);
    return value;
  }

  async #pool<T extends { readonly id: number }>(
    method: string,
    filter: number,
    parse: (xml: string) => T[],
    trailing: readonly number[] = [],
  ): Promise<T[]> {
    const seen = new Map<number, T>();
    for (let offset = 0; ; offset += PAGE_SIZE) {
      const page = parse(await this.#string(method, [filter, offset, -PAGE_SIZE, ...trailing]));
      let fresh = 0;
      for (const item of page) {
        if (seen.has(item.id)) continue;
        seen.set(item.id, item);
        fresh++;
      }
      // A server that ignores paging sends everything every time: stop when nothing new comes.
      if (page.length < PAGE_SIZE || fresh === 0) break;
    }
    return [...seen.values()];
  }
}

function expectString(method: string, value: XmlRpcValue): string {
  if (typeof value !== 'string') throw new OneswapError('remote', `OpenNebula answered ${method} with ${typeof value} where a document was expected`);
  return value;
}
