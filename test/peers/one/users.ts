/**
 * Users and groups: the setup API's createUser, one.user.info (-1 = caller),
 * one.user.login, and the generic chown used by images and templates.
 */
import { userXml } from './documents.js';
import { ErrorCode, OBJECT_TYPE_STR, ObjectKind, RequestError, noExists } from './errors.js';
import { CallContext, Sim, sha256 } from './simulator.js';
import { Owned, UserRec } from './state.js';
import { Template } from './template-syntax.js';
import { XrValue, int, str } from './wire.js';

export interface CreateUserOptions {
  admin?: boolean;
  sshKey?: string;
  /** primary group; default 1 (users), or 0 (oneadmin) with admin */
  gid?: number;
  template?: Record<string, string>;
}

export function createUser(sim: Sim, name: string, password: string, o: CreateUserOptions = {}): number {
  const err = Sim.nameError(name);
  if (err) throw new Error(err);
  if ([...sim.pools.users.values()].some((u) => u.name === name)) throw new Error(`NAME is already taken by USER`);
  const id = sim.pools.next.user++;
  const gid = o.gid ?? (o.admin ? 0 : 1);
  const t = new Template();
  if (o.sshKey !== undefined) t.add('SSH_PUBLIC_KEY', o.sshKey);
  for (const [k, v] of Object.entries(o.template ?? {})) t.add(k.toUpperCase(), v);
  const u: UserRec = {
    id,
    name,
    password: sha256(password),
    gid,
    groups: [gid],
    authDriver: 'core',
    enabled: true,
    template: t,
    tokens: new Map(),
  };
  sim.pools.users.set(id, u);
  sim.pools.groups.get(gid)?.users.push(id);
  return id;
}

export function userInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  let id = int(p, 1);
  if (id === -1) id = call.uid;
  const u = sim.pools.users.get(id);
  if (!u) throw noExists('user', id);
  if (!call.isAdmin && u.id !== call.uid) {
    throw new RequestError(ErrorCode.AUTHORIZATION, `Not authorized to perform USE USER [${id}]`, id, 'user');
  }
  return userXml(sim.pools, u, true);
}

/** one.user.login [A:sssii]: username, token ("" = new), valid seconds (-1 forever, 0 revoke), egid */
export function userLogin(sim: Sim, call: CallContext, p: XrValue[]): string {
  const name = str(p, 1);
  const u = [...sim.pools.users.values()].find((x) => x.name === name);
  if (!u) throw new RequestError(ErrorCode.NO_EXISTS, '', -1, 'user');
  if (!call.isAdmin && u.id !== call.uid) {
    throw new RequestError(ErrorCode.AUTHORIZATION, `Not authorized to perform MANAGE USER [${u.id}]`, u.id, 'user');
  }
  let token = str(p, 2);
  const valid = int(p, 3, 36000);
  const egid = int(p, 4, -1);
  if (valid === 0) {
    u.tokens.delete(token);
    return token;
  }
  if (token === '') token = sim.newToken();
  u.tokens.set(token, { expires: valid === -1 ? -1 : Sim.now() + valid, egid });
  return token;
}

/** RequestManagerChown for one object: uid/gid -1 = keep. */
export function chownObject<T extends Owned>(sim: Sim, call: CallContext, obj: T, kind: ObjectKind, pool: Iterable<T>, nuid: number, ngid: number): number {
  sim.authorize(call, obj, 'MANAGE', kind);
  if (nuid >= 0 && !sim.pools.users.has(nuid)) throw new RequestError(ErrorCode.NO_EXISTS, '', nuid, 'user');
  if (ngid >= 0 && !sim.pools.groups.has(ngid)) throw new RequestError(ErrorCode.NO_EXISTS, '', ngid, 'group');
  if (!call.isAdmin) {
    if (nuid >= 0 && nuid !== obj.uid) {
      throw new RequestError(ErrorCode.AUTHORIZATION, `Not authorized to perform MANAGE USER [${nuid}]`, obj.id, kind);
    }
    if (ngid >= 0 && !call.groups.includes(ngid)) {
      throw new RequestError(ErrorCode.AUTHORIZATION, `Not authorized to perform USE GROUP [${ngid}]`, obj.id, kind);
    }
  }
  if (nuid >= 0 && nuid !== obj.uid) {
    const taken = Sim.nameTaken(pool, obj.name, nuid, obj.id);
    if (taken) {
      throw new RequestError(ErrorCode.ACTION, `NAME is already taken by ${OBJECT_TYPE_STR[kind]} ${taken.id}.`, obj.id, kind);
    }
    obj.uid = nuid;
  }
  if (ngid >= 0) obj.gid = ngid;
  return obj.id;
}
