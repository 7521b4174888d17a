// `oneswap warm status VM --datastore ID`: where a warm migration stands and what a cutover now
// would cost, as text or JSON. Reads only: no lock, no snapshot, nothing written.

import { defaultStateDir, warmStatus, type WarmStatus } from '../supervisor/index.js';
import { formatBytes, formatDuration } from '../progress/index.js';
import { connectOne, connectVcenter, parseHost, type VcenterOptions } from './connect.js';
import { positiveInt, readerSettings } from './import.js';
import { renderTable } from '../progress/index.js';

export interface WarmStatusCliOptions extends VcenterOptions {
  datacenter?: string;
  datastore: string;
  json?: boolean;
  endpoint?: string;
  stateDir?: string;
  namePrefix?: string;
  transport?: string;
  vddkLibdir?: string;
}

export async function runWarmStatus(vm: string, o: WarmStatusCliOptions, warn: (m: string) => void): Promise<string> {
  const datastoreId = positiveInt(o.datastore, '--datastore', true);
  const vsphere = await connectVcenter(o, warn);
  try {
    const one = await connectOne(o.endpoint);
    try {
      const host = parseHost(o.vcenter ?? process.env.ONESWAP_VCENTER ?? '').host;
      const s = await warmStatus({ vsphere, one, vcenterHost: host }, vm, { datastoreId, stateDir: o.stateDir ?? defaultStateDir(), namePrefix: o.namePrefix ?? '', datacenter: o.datacenter, readers: readerSettings(o) });
      return o.json ? `${JSON.stringify(s, null, 2)}\n` : renderStatus(s);
    } finally {
      one.close();
    }
  } finally {
    await vsphere.logout().catch(() => undefined);
  }
}

function rate(bps: number | undefined): string {
  return bps === undefined ? 'not measured yet' : `${formatBytes(bps)}/s`;
}

export function renderStatus(s: WarmStatus): string {
  const lines = [`${s.vm}: ${s.state}, ${s.rounds} round${s.rounds === 1 ? '' : 's'} done${s.lastSnapshotAt ? `, images as of ${s.lastSnapshotAt}` : ''}${s.runningPid ? ` (oneswap pid ${s.runningPid} is working on it)` : ''}`];
  if (s.disks.length > 0) {
    lines.push(
      renderTable(
        ['DISK', 'IMAGE', 'CHANGE ID', 'UNFINISHED', 'BYTES PER ROUND', 'CUTOVER READS WITH'],
        s.disks.map((d) => [`${d.index} ${d.label}`, String(d.imageId), d.changeId ?? '-', d.pendingBytes > 0 ? formatBytes(d.pendingBytes) : '-', d.bytesPerRound.map(formatBytes).join(' ') || '-', d.cutoverReader ?? '-']),
      ).trimEnd(),
    );
  }
  lines.push(`copy rate: ${rate(s.copyRate)}; guest change rate: ${rate(s.changeRate)}`);
  if (s.rehearsal) lines.push(`rehearsal conversion: ${s.rehearsal.ok ? `passed in ${formatDuration(s.rehearsal.durationMs / 1000)} (${s.rehearsal.detail})` : `FAILED: ${s.rehearsal.detail}`}`);
  if (s.prediction) {
    const p = s.prediction;
    lines.push(`predicted downtime for a cutover now: ${formatDuration(p.totalMs / 1000)} (${p.parts.map((x) => `${x.step} ${formatDuration(x.ms / 1000)}`).join(', ')}); ${p.notes.join('; ')}`);
  }
  return `${lines.join('\n')}\n`;
}
