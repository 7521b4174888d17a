// Batched reads through the PropertyCollector: one RetrievePropertiesEx answers for any number of
// objects, continued with ContinueRetrievePropertiesEx while the server hands out a token.
// ContainerViews select "every object of these types under the root" without walking folders.

import { OneswapError } from '../errors/index.js';
import type { SoapObject, SoapValue } from './soap-envelope.js';
import { ref } from './soap-envelope.js';
import type { Session } from './session.js';
import type { SoapTransport } from './soap.js';
import type { MoRef } from './types.js';
import { isFault } from './vim-fault.js';
import { list, moRef, text, type VimValue } from './vim-value.js';

export interface PropertySpec {
  readonly type: string;
  readonly pathSet: readonly string[];
}

export interface TraversalSpec {
  readonly name: string;
  readonly type: string;
  readonly path: string;
  readonly skip: boolean;
}

export interface ObjectSpec {
  readonly obj: MoRef;
  readonly skip?: boolean;
  readonly selectSet?: readonly TraversalSpec[];
}

export interface PropertyFilterSpec {
  readonly propSet: readonly PropertySpec[];
  readonly objectSet: readonly ObjectSpec[];
}

export interface ObjectContent {
  readonly obj: MoRef;
  /** Property path → value; unset properties are absent. */
  readonly props: ReadonlyMap<string, VimValue>;
}

/** Objects per page asked from the server; it may send fewer and continue with a token. */
export const DEFAULT_PAGE_SIZE = 500;

export class PropertyCollector {
  private readonly transport: SoapTransport;
  private readonly session: Session;
  private readonly pageSize: number;

  constructor(transport: SoapTransport, session: Session, pageSize = DEFAULT_PAGE_SIZE) {
    this.transport = transport;
    this.session = session;
    this.pageSize = pageSize;
  }

  private get collector(): MoRef {
    return this.session.serviceContent.propertyCollector;
  }

  async retrieve(specSet: readonly PropertyFilterSpec[]): Promise<ObjectContent[]> {
    return retrieveAllPages(
      () => this.transport.callOne('RetrievePropertiesEx', this.collector, [
        ['specSet', specSet.map(filterSpecArg)],
        ['options', { maxObjects: this.pageSize }],
      ]),
      (token) => this.transport.callOne('ContinueRetrievePropertiesEx', this.collector, [['token', token]]),
    );
  }

  /** Properties of one object; undefined props are unset. */
  async retrieveOne(obj: MoRef, pathSet: readonly string[]): Promise<ReadonlyMap<string, VimValue>> {
    const contents = await this.retrieve([{ propSet: [{ type: obj.type, pathSet }], objectSet: [{ obj }] }]);
    return contents[0]?.props ?? new Map();
  }

  /**
   * Runs `use` with a ContainerView of `types` under the root folder, destroyed afterwards. Views
   * belong to the session: if a re-login happened meanwhile, the view is gone and the whole read
   * is done once more on a new view.
   */
  async withContainerView<T>(types: readonly string[], use: (view: ObjectSpec) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const view = await this.createContainerView(types);
      const generation = this.session.generation;
      try {
        return await use({ obj: view, skip: true, selectSet: [{ name: 'traverseView', type: 'ContainerView', path: 'view', skip: false }] });
      } catch (err) {
        if (attempt === 0 && this.session.generation !== generation && isFault(err, 'ManagedObjectNotFound')) continue;
        throw err;
      } finally {
        if (this.session.generation === generation) await this.destroyView(view);
      }
    }
  }

  private async createContainerView(types: readonly string[]): Promise<MoRef> {
    const content = this.session.serviceContent;
    const view = moRef(await this.transport.callOne('CreateContainerView', content.viewManager, [
      ['container', ref(content.rootFolder)],
      ['type', types],
      ['recursive', true],
    ]));
    if (view === undefined) throw new OneswapError('remote', `vCenter ${this.transport.endpoint.host} answered CreateContainerView without a view; check that this is a vCenter or ESXi SDK endpoint`);
    return view;
  }

  private async destroyView(view: MoRef): Promise<void> {
    try {
      await this.transport.call('DestroyView', view);
    } catch {
      // A leaked view dies with the session; failing the read for it would lose good data.
    }
  }
}

/**
 * The token loop, separate from the transport so it can be tested with recorded answers (vcsim
 * never pages). RetrieveResult: `objects[]` plus an optional `token` meaning "more to come".
 */
export async function retrieveAllPages(
  first: () => Promise<VimValue | undefined>,
  next: (token: string) => Promise<VimValue | undefined>,
): Promise<ObjectContent[]> {
  const out: ObjectContent[] = [];
  let result = await first();
  const seenTokens = new Set<string>();
  for (;;) {
    for (const content of list(result, 'objects')) {
      const obj = moRef(content, 'obj');
      if (obj === undefined) continue;
      const props = new Map<string, VimValue>();
      for (const p of list(content, 'propSet')) {
        const name = text(p, 'name');
        const val = typeof p === 'object' && !Array.isArray(p) ? (p as { val?: VimValue }).val : undefined;
        if (name !== undefined && val !== undefined) props.set(name, val);
      }
      out.push({ obj, props });
    }
    const token = text(result, 'token');
    if (token === undefined || token === '') return out;
    if (seenTokens.has(token)) throw new OneswapError('remote', `the vSphere PropertyCollector sent continuation token ${token} twice (ContinueRetrievePropertiesEx); retry, and report the server version if it persists`);
    seenTokens.add(token);
    result = await next(token);
  }
}

function filterSpecArg(spec: PropertyFilterSpec): SoapObject {
  return {
    propSet: spec.propSet.map((p): SoapObject => ({ type: p.type, all: false, pathSet: p.pathSet })),
    objectSet: spec.objectSet.map(objectSpecArg),
  };
}

function objectSpecArg(o: ObjectSpec): SoapObject {
  const selectSet: SoapValue = o.selectSet?.map((t): SoapObject => ({ $type: 'TraversalSpec', name: t.name, type: t.type, path: t.path, skip: t.skip }));
  return { obj: ref(o.obj), skip: o.skip ?? false, selectSet };
}
