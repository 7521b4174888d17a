// `oneswap plan new`: a starting plan from the inventory (lib/plan), written to stdout or a new file;
// and the plan's vCenter as the options every command connects with.

import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { parsePlan, startingPlan, type PlanVcenter } from '../plan/index.js';
import { connectOne, connectVcenter, type VcenterOptions } from './connect.js';
import { selectVms, type VmSelection } from './list.js';

export interface PlanNewCliOptions extends VcenterOptions, VmSelection {
  datastore: string;
  mode?: string;
  endpoint?: string;
  output?: string;
}

/** The plan's text when it goes to stdout; undefined when it was written to `--output`. */
export async function runPlanNew(o: PlanNewCliOptions, warn: (m: string) => void): Promise<string | undefined> {
  if (!/^\d+$/.test(o.datastore)) throw new OneswapError('usage', `--datastore "${o.datastore}" is not an OpenNebula datastore id`);
  const mode = o.mode ?? 'cold';
  if (mode !== 'cold' && mode !== 'warm') throw new OneswapError('usage', `--mode "${mode}" is not cold or warm`);
  const client = await connectVcenter(o, warn);
  // connectVcenter refused a missing host or user.
  const address = (o.vcenter ?? process.env.ONESWAP_VCENTER)!;
  const user = (o.user ?? process.env.ONESWAP_VCENTER_USER)!;
  let vms;
  try {
    vms = await selectVms(client, o);
  } finally {
    await client.logout().catch(() => undefined);
  }
  if (vms.length === 0) throw new OneswapError('not-found', `no VM of vCenter ${address} matches the filters`, { hint: 'list them with: oneswap list vms' });
  const one = await connectOne(o.endpoint);
  let oneNetworks;
  try {
    oneNetworks = (await one.vnets()).map((n) => ({ id: n.id, name: n.name }));
  } finally {
    one.close();
  }
  const passwordFile = o.passwordFile ?? process.env.ONESWAP_VCENTER_PASSWORD_FILE;
  const text = startingPlan({
    vcenter: {
      address,
      user,
      ...(passwordFile === undefined ? {} : { passwordFile: resolve(passwordFile) }),
      ...(o.thumbprint === undefined ? {} : { thumbprint: o.thumbprint }),
      ...(o.ca === undefined ? {} : { ca: resolve(o.ca) }),
      ...(o.insecure ? { insecure: true } : {}),
      ...(o.datacenter === undefined ? {} : { datacenter: o.datacenter }),
    },
    ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
    datastoreId: Number(o.datastore),
    mode,
    vms,
    oneNetworks,
  });
  // What plan new writes, plan check and run must read: a plan that does not load is our bug.
  parsePlan(text, o.output ?? 'the new plan');
  if (o.output === undefined) return text;
  try {
    await writeFile(o.output, text, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new OneswapError('conflict', `${o.output} exists; plan new does not overwrite a plan`, { hint: 'choose another file name, or remove it first' });
    throw new OneswapError('usage', `cannot write the plan ${o.output}: ${code ?? (err as Error).message}`);
  }
  return undefined;
}

/** A plan's vCenter as connectVcenter takes it (the password from its file, the environment or a prompt). */
export function planVcenterOptions(v: PlanVcenter): VcenterOptions {
  return {
    vcenter: v.address,
    user: v.user,
    ...(v.passwordFile === undefined ? {} : { passwordFile: v.passwordFile }),
    ...(v.tls.kind === 'thumbprint' ? { thumbprint: v.tls.thumbprint } : v.tls.kind === 'ca' ? { ca: v.tls.file } : v.tls.kind === 'insecure' ? { insecure: true } : {}),
  };
}
