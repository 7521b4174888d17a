// `plan check` for people: a row per finding (a VM with none is one "ready" row), then the room of
// every target datastore and shared Ceph pool for the whole plan, then one line of totals.

import { formatBytes, renderTable } from '../progress/index.js';
import type { FleetCheck } from './fleet-check.js';
import type { PoolLine, RoomLine } from './plan-capacity.js';

export function renderCheck(check: FleetCheck): string {
  const rows: string[][] = [];
  for (const vm of check.vms) {
    if (vm.blockers.length === 0 && vm.warnings.length === 0) rows.push([vm.key, String(vm.line), 'ready', '', '']);
    for (const f of vm.blockers) rows.push([vm.key, String(vm.line), 'BLOCKER', f.code, f.message]);
    for (const f of vm.warnings) rows.push([vm.key, String(vm.line), 'warning', f.code, f.message]);
  }
  const out = [renderTable(['VM', 'LINE', 'VERDICT', 'CODE', 'WHAT'], rows)];
  const room = [
    ...check.capacity.map((c) => [`datastore ${c.datastoreId} (${c.name}, ${c.kind === 'ceph' ? `Ceph pool ${c.cephPool ?? '?'}` : 'files'})`, ...roomCells(c)]),
    ...check.pools.map((p) => [`Ceph pool ${p.pool} (datastores ${p.datastoreIds.join(', ')})`, ...roomCells(p)]),
  ];
  if (room.length > 0) out.push(`\n${renderTable(['TARGET', 'VMS', 'NEEDED', 'FREE', 'ROOM'], room)}`);
  const blocked = check.vms.filter((v) => v.blockers.length > 0).length;
  const warned = check.vms.filter((v) => v.blockers.length === 0 && v.warnings.length > 0).length;
  const ready = check.vms.length - blocked - warned;
  out.push(`\n${check.vms.length} VM${check.vms.length === 1 ? '' : 's'}: ${ready} ready, ${warned} with warnings, ${blocked} blocked\n`);
  return out.join('');
}

function roomCells(r: Omit<RoomLine, 'datastoreId'> | PoolLine): string[] {
  const verdict = r.enough ? 'enough' : `not enough: ${r.overflow.map((o) => o.key).join(', ')} do${r.overflow.length === 1 ? 'es' : ''} not fit`;
  return [String(r.vms.length), formatBytes(r.neededBytes), formatBytes(r.freeBytes), verdict];
}
