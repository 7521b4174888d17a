// `plan estimate` for people: a table per wave, the plan's total, the rates used with where each
// comes from, the probes made and what is assumed. The JSON form is the PlanEstimate itself.

import { formatBytes, formatDuration, renderTable } from '../progress/index.js';
import type { Basis, Figure, PlanEstimate } from './estimate.js';

const MARK: Record<Basis, string> = { measured: 'm', 'from-history': 'h', assumed: 'a' };

const bytes = (f: Figure): string => `${formatBytes(f.value)} ${MARK[f.basis]}`;
const time = (f: Figure): string => `${formatDuration(f.value / 1000)} ${MARK[f.basis]}`;
const at = (ms: number): string => formatDuration(ms / 1000);
// renderTable ends its last line; the blank lines between parts are this renderer's.
const table = (headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string => renderTable(headers, rows).trimEnd();

export function renderEstimateText(e: PlanEstimate): string {
  const out: string[] = [];
  out.push(`Plan estimate of ${e.at}: at most ${e.budgets.readsPerHost} disk reads per ESXi host, ${e.budgets.converting} conversion${e.budgets.converting === 1 ? '' : 's'} at once, ${e.budgets.inFlight} VMs in flight`);
  out.push('m = measured, h = from past runs, a = assumed; times from the start of the plan');
  for (const w of e.waves) {
    out.push('', `Wave ${w.name}: ${w.vms.length} VM${w.vms.length === 1 ? '' : 's'}, ${bytes(w.bytes)}, ${at(w.startMs)} → ${at(w.endMs)}`);
    const rows = e.vms
      .filter((v) => v.wave === w.name)
      .map((v) => [v.key, v.mode, v.host, bytes(v.bytes), time(v.copyMs), v.conversionMs ? time(v.conversionMs) : '-', at(v.startMs), at(v.endMs), time(v.downtimeMs)]);
    out.push(table(['VM', 'MODE', 'HOST', 'BYTES', 'COPY', 'CONVERSION', 'START', 'END', 'DOWNTIME'], rows));
  }
  const total = e.vms.reduce((a, v) => a + v.bytes.value, 0);
  out.push('', `Total: ${formatBytes(total)} in ${time(e.totalMs)} (${e.totalMs.how})`);

  const rates = new Map<string, string[]>();
  for (const v of e.vms)
    for (const d of v.disks) rates.set(JSON.stringify([v.host, d.datastore, d.reader]), [v.host, d.datastore, d.reader, `${formatBytes(d.rate.value)}/s`, d.rate.basis, d.rate.how]);
  out.push('', 'Copy rates:', table(['HOST', 'DATASTORE', 'READER', 'RATE', 'BASIS', 'FROM'], [...rates.values()]));

  const sizes = e.vms.flatMap((v) => v.disks.filter((d) => d.bytes.basis !== 'measured').map((d) => `${v.key} ${d.label}: ${d.bytes.how}`));
  if (sizes.length > 0) out.push('', 'Disks counted at their provisioned size:', ...sizes.map((s) => `  ${s}`));
  const conversions = e.vms.flatMap((v) => (v.conversionMs ? [`${v.key}: ${v.conversionMs.how}`] : []));
  if (conversions.length > 0) out.push('', 'Conversions:', ...conversions.map((s) => `  ${s}`));
  if (e.probes.length > 0)
    out.push(
      '',
      'Probes:',
      ...e.probes.map((p) => {
        const with_ = p.together === undefined ? '' : ` (${p.together} reads at once on all hosts)`;
        if (p.failed !== undefined) return `  ${p.host} ${p.datastore}${with_}: ${p.disk === undefined ? '' : `${p.disk}: `}${p.failed}; ${p.together === undefined ? 'its rate is assumed' : 'reads at once are assumed not to hold each other back'}`;
        return `  ${p.host} ${p.datastore}${with_}: read ${formatBytes(p.bytes!)} of ${p.disk} in ${Math.round(p.ms!)} ms`;
      }),
    );
  out.push('', 'Assumed:', ...e.assumptions.map((a) => `  ${a}`));
  return `${out.join('\n')}\n`;
}
