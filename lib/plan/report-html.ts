// A plan run's summary as one self-contained HTML file: inline CSS and SVG, no script, nothing
// fetched (a Content-Security-Policy of default-src 'none' says so to the browser too), so it opens
// from a mail attachment or an air-gapped share exactly as it was written. A header with the run's
// figures and budgets, a timeline of the waves (a lane per VM, a bar per phase, downtime beneath),
// totals per wave, and a row per VM. Every string from the summary is escaped: VM names and errors
// come from vCenter and from remote systems.

import { formatBytes, formatDuration } from '../progress/index.js';
import { escapeXml as esc } from '../xml/index.js';
import type { PhaseSpan, PlanRunSummary, VmOutcome, VmRunRecord } from './run-summary.js';
import { formatTime, outcomePhrase, spanMs, totalsOf, waveTitle, wavesOf, type RunTotals, type WaveGroup } from './run-totals.js';

/** Phase colours in the order phases run; a phase not listed here gets OTHER_PHASE. */
const PHASE_COLOURS: ReadonlyArray<readonly [string, string]> = [
  ['waiting', '#d9d9d9'],
  ['precheck', '#8da0cb'],
  ['shutdown', '#e78ac3'],
  ['placeholders', '#a6d854'],
  ['sync', '#66c2a5'],
  ['rehearse', '#c5b0d5'],
  ['copy', '#1f77b4'],
  ['final-sync', '#17becf'],
  ['convert', '#ff7f0e'],
  ['build', '#2ca02c'],
  ['cleanup', '#bcbd22'],
  ['rollback', '#8c564b'],
];
const OTHER_PHASE = '#7f7f7f';
const FAILED = '#d62728';
const DOWNTIME = '#222222';

// Timeline geometry (px). Lanes keep their height whatever the number of VMs: the SVG grows
// downwards instead, so 200 VMs stay as readable as 2.
const LABEL_W = 230;
const PLOT_W = 960;
const RIGHT_PAD = 20;
const AXIS_H = 24;
const WAVE_H = 22;
const LANE_H = 18;
const BAR_Y = 2;
const BAR_H = 10;
const DOWN_Y = 13;
const DOWN_H = 3;
/** A phase that took no time still shows, as a sliver. */
const MIN_BAR_W = 2;
const LABEL_CHARS = 30;

export function renderHtmlReport(summary: PlanRunSummary): string {
  const groups = wavesOf(summary);
  const totals = totalsOf(summary.vms);
  const title = `oneswap plan ${summary.plan}, run ${summary.runId}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="color-scheme" content="light">
<title>${esc(title)}</title>
<style>
${CSS}
</style>
</head>
<body>
${header(summary, totals)}
<h2>Timeline</h2>
${legend(summary)}
<div class="timeline">
${timeline(summary, groups)}
</div>
<h2>Waves</h2>
${waveTable(groups, totals)}
<h2>VMs</h2>
${vmTable(groups)}
</body>
</html>
`;
}

const CSS = `body { font: 14px/1.4 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.sub { color: #555; margin: 0 0 16px; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; margin: 0; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; }
.counts span { display: inline-block; padding: 1px 8px; border-radius: 3px; margin-right: 6px; }
.o-done { background: #dff0d8; }
.o-failed { background: #f8d7da; }
.o-pending { background: #eeeeee; }
.o-skipped { background: #e2e6ef; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 0 0 8px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend i { display: inline-block; width: 12px; height: 12px; }
.legend i.failed { box-sizing: border-box; border: 2px solid ${FAILED}; }
.legend i.downtime { height: 4px; background: ${DOWNTIME}; }
.timeline { overflow-x: auto; }
.timeline svg { display: block; font: 11px system-ui, sans-serif; }
svg .tick { stroke: #e4e4e4; }
svg .axis text { fill: #555; }
svg .wave-label { font-weight: 600; }
svg .vm-label { fill: #1a1a1a; }
svg .note { fill: #777; font-style: italic; }
p.note { color: #777; font-style: italic; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.error { color: #8a1c1c; min-width: 20em; white-space: normal; overflow-wrap: anywhere; }
tr.total td { font-weight: 600; border-top: 2px solid #bbb; }`;

function header(s: PlanRunSummary, t: RunTotals): string {
  const wall = spanMs(s.start, s.end);
  const limits = Object.entries(s.budgets.datastoreBytesPerSec);
  const facts: Array<[string, string]> = [
    ['Started', esc(formatTime(s.start))],
    ['Ended', esc(formatTime(s.end))],
    ['Wall time', wall === undefined ? '-' : esc(formatDuration(wall / 1000))],
    ['VMs', `<span class="counts">${counts(t)}</span>`],
    ['Copied', esc(formatBytes(t.bytesCopied))],
    ['Written', esc(formatBytes(t.bytesWritten))],
    ['Downtime in all', esc(formatDuration(t.downtimeMs / 1000))],
    [
      'Budgets',
      esc(
        `${s.budgets.readsPerHost} disk reads per ESXi host, ${s.budgets.converting} converting, ${s.budgets.inFlight} in flight` +
          (limits.length === 0 ? '' : `; ${limits.map(([ds, bps]) => `${ds} ${formatBytes(bps)}/s`).join(', ')}`),
      ),
    ],
  ];
  return `<h1>Plan ${esc(s.plan)}</h1>
<p class="sub">run ${esc(s.runId)}</p>
<dl class="facts">
${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('\n')}
</dl>`;
}

function counts(t: RunTotals): string {
  const order: readonly VmOutcome[] = ['done', 'failed', 'pending', 'skipped'];
  return `${t.vms} in all ` + order.map((o) => `<span class="o-${o}">${t.outcomes[o]} ${o}</span>`).join('');
}

function colourOf(phase: string): string {
  return PHASE_COLOURS.find(([p]) => p === phase)?.[1] ?? OTHER_PHASE;
}

/** The phases this run went through, in running order (others after, as met), and the marks it uses. */
function legend(s: PlanRunSummary): string {
  const seen = new Set(s.vms.flatMap((vm) => vm.phases.map((p) => p.phase)));
  const known = PHASE_COLOURS.map(([p]) => p).filter((p) => seen.has(p));
  const other = [...seen].filter((p) => !PHASE_COLOURS.some(([k]) => k === p));
  const items = [...known, ...other].map((p) => `<span><i style="background:${colourOf(p)}"></i>${esc(p)}</span>`);
  if (s.vms.some((vm) => vm.phases.some((p) => p.state === 'failed'))) items.push('<span><i class="failed"></i>failed phase</span>');
  if (s.vms.some((vm) => vm.downtimeMs !== undefined)) items.push('<span><i class="downtime"></i>downtime (source off, not yet running here)</span>');
  return `<div class="legend">${items.join('')}</div>`;
}

interface Scale {
  readonly t0: number;
  readonly ms: number;
  x(t: number): number;
}

/** The run's span, widened to any phase or downtime outside it, so nothing falls off the axis. */
function scaleOf(s: PlanRunSummary): Scale {
  const times = [
    Date.parse(s.start),
    Date.parse(s.end),
    ...s.vms.flatMap((vm) => vm.phases.flatMap((p) => [Date.parse(p.start), Date.parse(p.end)])),
    ...s.vms.flatMap((vm) => downtimeSpan(vm)?.start ?? []),
  ].filter(Number.isFinite);
  const t0 = times.length > 0 ? Math.min(...times) : 0;
  // A run that took no time still gets an axis of a second.
  const ms = Math.max(1000, times.length > 0 ? Math.max(...times) - t0 : 0);
  return { t0, ms, x: (t) => LABEL_W + ((t - t0) / ms) * PLOT_W };
}

const TICK_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** Ticks at a round step giving at most 10 intervals, labelled as time since the start. */
function ticksOf(sc: Scale): number[] {
  const stepS = TICK_STEPS_S.find((st) => sc.ms / (st * 1000) <= 10) ?? Math.ceil(sc.ms / 1000 / 10 / 86400) * 86400;
  const ticks: number[] = [];
  for (let off = 0; off <= sc.ms; off += stepS * 1000) ticks.push(off);
  return ticks;
}

function timeline(s: PlanRunSummary, groups: readonly WaveGroup[]): string {
  if (groups.length === 0) return '<p class="note">no VMs in this run</p>';
  const sc = scaleOf(s);
  const ticks = ticksOf(sc);
  const rows: string[] = [];
  let y = AXIS_H;
  for (const g of groups) {
    rows.push(waveRow(g, sc, y));
    y += WAVE_H;
    for (const vm of g.vms) {
      rows.push(lane(vm, sc, y));
      y += LANE_H;
    }
  }
  const plotBottom = y;
  const height = plotBottom + AXIS_H;
  const width = LABEL_W + PLOT_W + RIGHT_PAD;
  const grid = ticks.map((off) => {
    const x = fx(sc.x(sc.t0 + off));
    return `<line class="tick" x1="${x}" y1="${AXIS_H}" x2="${x}" y2="${plotBottom}"/>`;
  });
  const labels = (ly: number): string =>
    ticks.map((off) => `<text x="${fx(sc.x(sc.t0 + off))}" y="${ly}" text-anchor="middle">${esc(formatDuration(off / 1000))}</text>`).join('');
  return `<svg class="timeline-chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="timeline of the waves">
<g class="grid">${grid.join('')}</g>
<g class="axis axis-top">${labels(AXIS_H - 8)}</g>
${rows.join('\n')}
<g class="axis axis-bottom">${labels(plotBottom + 16)}</g>
</svg>`;
}

function waveRow(g: WaveGroup, sc: Scale, y: number): string {
  const span =
    g.wave?.start !== undefined && Number.isFinite(Date.parse(g.wave.start))
      ? bar(sc, Date.parse(g.wave.start), g.wave.end !== undefined && Number.isFinite(Date.parse(g.wave.end)) ? Date.parse(g.wave.end) : sc.t0 + sc.ms)
      : undefined;
  const band = span === undefined ? '' : `<rect class="wave-span" x="${span.x}" y="${y + 6}" width="${span.w}" height="${WAVE_H - 10}" fill="#efefef"/>`;
  return `<g class="wave" data-wave="${esc(g.name)}">${band}<text class="wave-label" x="4" y="${y + 15}">${esc(clip(waveTitle(g.name)))}</text></g>`;
}

function lane(vm: VmRunRecord, sc: Scale, y: number): string {
  const parts: string[] = [];
  parts.push(`<text class="vm-label" x="14" y="${y + BAR_Y + BAR_H - 1}">${esc(clip(vm.key))}<title>${esc(vm.key)}</title></text>`);
  const drawn = vm.phases.filter((p) => Number.isFinite(Date.parse(p.start)) && Number.isFinite(Date.parse(p.end)));
  for (const p of drawn) parts.push(phaseRect(p, sc, y));
  const down = downtimeSpan(vm);
  if (down !== undefined) {
    const b = bar(sc, down.start, down.end);
    parts.push(
      `<rect class="downtime" x="${b.x}" y="${y + DOWN_Y}" width="${b.w}" height="${DOWN_H}" fill="${DOWNTIME}" shape-rendering="crispEdges"><title>${esc(`${vm.key}: downtime ${formatDuration((vm.downtimeMs ?? 0) / 1000)}`)}</title></rect>`,
    );
  }
  if (drawn.length === 0) parts.push(`<text class="note" x="${LABEL_W + 4}" y="${y + BAR_Y + BAR_H - 1}">${esc(vm.outcome === 'pending' ? 'pending: not started' : vm.outcome)}</text>`);
  return `<g class="lane o-${esc(vm.outcome)}" data-vm="${esc(vm.key)}">${parts.join('')}</g>`;
}

function phaseRect(p: PhaseSpan, sc: Scale, y: number): string {
  const start = Date.parse(p.start);
  const end = Date.parse(p.end);
  const b = bar(sc, start, end);
  const failed = p.state === 'failed';
  // The stroke stays inside the bar so a failed sliver is as wide as a done one.
  const stroke = failed ? ` stroke="${FAILED}" stroke-width="2"` : '';
  const tip = `${p.phase} ${p.state}: ${formatTime(p.start)} → ${formatTime(p.end)} (${formatDuration(Math.max(0, end - start) / 1000)})`;
  const rect = `<rect class="phase${failed ? ' failed' : ''}" data-phase="${esc(p.phase)}" x="${b.x + (failed ? 1 : 0)}" y="${y + BAR_Y + (failed ? 1 : 0)}" width="${Math.max(failed ? 1 : 0, b.w - (failed ? 2 : 0))}" height="${BAR_H - (failed ? 2 : 0)}" fill="${colourOf(p.phase)}"${stroke} shape-rendering="crispEdges"><title>${esc(tip)}</title></rect>`;
  if (!failed) return rect;
  // A cross after the failed bar: visible even when the bar is a sliver.
  const cx = fx(b.x + b.w + 5);
  const cy = y + BAR_Y + BAR_H / 2;
  return `${rect}<path class="failed-mark" d="M${fx(cx - 3)} ${cy - 3}L${fx(cx + 3)} ${cy + 3}M${fx(cx - 3)} ${cy + 3}L${fx(cx + 3)} ${cy - 3}" stroke="${FAILED}" stroke-width="2"/>`;
}

/**
 * When the VM was down, as the summary defines downtime: a warm VM from its source's stop until its
 * template or VM exists (so ending with `build`, or its last phase when it did not get that far); a
 * cold one throughout the import (so from its first phase).
 */
function downtimeSpan(vm: VmRunRecord): { start: number; end: number } | undefined {
  if (vm.downtimeMs === undefined) return undefined;
  const starts = vm.phases.map((p) => Date.parse(p.start)).filter(Number.isFinite);
  const ends = vm.phases.map((p) => Date.parse(p.end)).filter(Number.isFinite);
  if (starts.length === 0 || ends.length === 0) return undefined;
  if (vm.mode === 'cold') {
    const start = Math.min(...starts);
    return { start, end: start + vm.downtimeMs };
  }
  const build = vm.phases.find((p) => p.phase === 'build' && Number.isFinite(Date.parse(p.end)));
  const end = build !== undefined ? Date.parse(build.end) : Math.max(...ends);
  return { start: end - vm.downtimeMs, end };
}

function bar(sc: Scale, start: number, end: number): { x: number; w: number } {
  const x = sc.x(start);
  return { x: fx(x), w: fx(Math.max(MIN_BAR_W, sc.x(Math.max(start, end)) - x)) };
}

/** Coordinates to a tenth of a pixel: exact enough, and the file stays small for 200 VMs. */
function fx(n: number): number {
  return Math.round(n * 10) / 10;
}

/** A lane label short enough for its column; the whole name is in its tooltip and the table. */
function clip(s: string): string {
  const chars = Array.from(s);
  return chars.length <= LABEL_CHARS ? s : `${chars.slice(0, LABEL_CHARS - 1).join('')}…`;
}

function waveTable(groups: readonly WaveGroup[], all: RunTotals): string {
  const row = (cls: string, name: string, start: string, end: string, wall: string, t: RunTotals): string =>
    `<tr class="${cls}"><td>${name}</td><td>${start}</td><td>${end}</td><td class="num">${wall}</td><td class="num">${t.vms}</td><td>${esc(t.vms === 0 ? '-' : outcomePhrase(t))}</td><td class="num">${esc(formatBytes(t.bytesCopied))}</td><td class="num">${esc(formatBytes(t.bytesWritten))}</td><td class="num">${esc(formatDuration(t.downtimeMs / 1000))}</td></tr>`;
  const rows = groups.map((g) => {
    const wall = spanMs(g.wave?.start, g.wave?.end);
    return row(
      'wave-total',
      esc(g.name),
      g.wave?.start === undefined ? '-' : esc(formatTime(g.wave.start)),
      g.wave?.end === undefined ? '-' : esc(formatTime(g.wave.end)),
      wall === undefined ? '-' : esc(formatDuration(wall / 1000)),
      totalsOf(g.vms),
    );
  });
  rows.push(row('total', 'all waves', '', '', '', all));
  return `<table class="waves">
<thead><tr><th>Wave</th><th>Start</th><th>End</th><th class="num">Wall time</th><th class="num">VMs</th><th>Outcomes</th><th class="num">Copied</th><th class="num">Written</th><th class="num">Downtime</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody>
</table>`;
}

function vmTable(groups: readonly WaveGroup[]): string {
  const rows = groups.flatMap((g) => g.vms.map(vmRow));
  const body = rows.length > 0 ? rows.join('\n') : '<tr><td colspan="14">no VMs in this run</td></tr>';
  return `<table class="vms">
<thead><tr><th>Wave</th><th>VM</th><th>Mode</th><th>Host</th><th>Outcome</th><th class="num">Duration</th><th class="num">Downtime</th><th class="num">Copied</th><th class="num">Written</th><th class="num">Template</th><th class="num">VM id</th><th>Images</th><th>Error</th></tr></thead>
<tbody>
${body}
</tbody>
</table>`;
}

function vmRow(vm: VmRunRecord): string {
  const cells = [
    `<td>${esc(vm.wave)}</td>`,
    `<td class="vm">${esc(vm.key)}</td>`,
    `<td>${esc(vm.mode)}</td>`,
    `<td>${esc(vm.host ?? '-')}</td>`,
    `<td class="o-${esc(vm.outcome)}">${esc(vm.outcome)}</td>`,
    `<td class="num">${vm.outcome === 'pending' ? '-' : esc(formatDuration(vm.durationMs / 1000))}</td>`,
    `<td class="num">${vm.downtimeMs === undefined ? '-' : esc(formatDuration(vm.downtimeMs / 1000))}</td>`,
    `<td class="num">${esc(formatBytes(vm.bytesCopied))}</td>`,
    `<td class="num">${esc(formatBytes(vm.bytesWritten))}</td>`,
    `<td class="num">${esc(String(vm.templateId ?? '-'))}</td>`,
    `<td class="num">${esc(String(vm.vmId ?? '-'))}</td>`,
    `<td>${esc(vm.imageIds.length > 0 ? vm.imageIds.join(', ') : '-')}</td>`,
    `<td class="error">${esc(vm.error ?? '')}</td>`,
  ];
  return `<tr data-vm="${esc(vm.key)}">${cells.join('')}</tr>`;
}
