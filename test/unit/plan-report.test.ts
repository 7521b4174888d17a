import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHtmlReport, renderTextSummary, type PlanRunSummary, type VmRunRecord } from '../../lib/plan/index.js';
import { EVIL_ERROR, EVIL_NAME, sampleRunSummary } from '../fixtures/plan-run-summary.js';

const empty = (): PlanRunSummary => ({ ...sampleRunSummary(), waves: [], vms: [] });

/** The attribute values of every element of `tag` whose class list starts with `cls`. */
function elements(html: string, tag: string, cls: string): string[] {
  return [...html.matchAll(new RegExp(`<${tag} class="${cls}[^"]*"[^>]*>`, 'g'))].map((m) => m[0]);
}

/** The lanes of the timeline: each VM's key as written (escaped) and its phase rects. */
function lanes(html: string): Array<{ vm: string; body: string }> {
  return [...html.matchAll(/<g class="lane [^"]*" data-vm="([^"]*)">(.*?)<\/g>/g)].map((m) => ({ vm: m[1]!, body: m[2]! }));
}

test('text summary: a line for the run, a table per wave, the totals last', () => {
  assert.equal(
    renderTextSummary(sampleRunSummary()),
    `plan estate.yaml, run 20261207T100000Z-7f3a: 2026-12-07 10:00:00 UTC → 2026-12-07 11:07:10 UTC (1:07:10)

wave-1: 7 VMs, 6 done, 1 failed; 2026-12-07 10:00:00 UTC → 2026-12-07 10:32:10 UTC (32:10)
VM          OUTCOME  DURATION  DOWNTIME  COPIED    WRITTEN   ERROR
web01       done     9:22      9:22      20.0 GiB  15.0 GiB
web02       done     10:22     10:22     24.0 GiB  18.0 GiB
web03       done     15:22     15:22     20.0 GiB  15.0 GiB
app01       done     30:12     4:55      60.0 GiB  45.0 GiB
app02       done     32:07     5:10      80.0 GiB  60.0 GiB
db<01>&"x'  failed   3:30      -         4.0 GiB   3.0 GiB   copy of disk0 failed: <script>alert(1)</script> & the host said "no"
files01     done     20:22     20:22     120 GiB   90.0 GiB

wave-2: 5 VMs, 4 done, 1 pending; 2026-12-07 10:40:00 UTC → 2026-12-07 11:07:10 UTC (27:10)
VM        OUTCOME  DURATION  DOWNTIME  COPIED    WRITTEN   ERROR
db02      done     25:42     5:25      200 GiB   150 GiB
db03      done     27:02     5:05      150 GiB   113 GiB
mq01      done     10:17     10:17     40.0 GiB  30.0 GiB
mq02      done     13:02     13:02     30.0 GiB  22.5 GiB
legacy01  pending  -         -         0 B       0 B

total: 12 VMs, 10 done, 1 failed, 1 pending in 1:07:10; 748 GiB copied, 561 GiB written, downtime 1:39:22 in all
`,
  );
});

test('text summary of a run with no VMs, and of a wave not started yet', () => {
  assert.equal(
    renderTextSummary(empty()),
    'plan estate.yaml, run 20261207T100000Z-7f3a: 2026-12-07 10:00:00 UTC → 2026-12-07 11:07:10 UTC (1:07:10)\n\ntotal: 0 VMs in 1:07:10; 0 B copied, 0 B written, downtime 0:00 in all\n',
  );
  const s = sampleRunSummary();
  const pending = s.vms.filter((v) => v.outcome === 'pending');
  assert.equal(
    renderTextSummary({ ...s, waves: [{ name: 'wave-2', vms: pending.map((v) => v.key) }], vms: pending }),
    'plan estate.yaml, run 20261207T100000Z-7f3a: 2026-12-07 10:00:00 UTC → 2026-12-07 11:07:10 UTC (1:07:10)\n\n' +
      'wave-2: 1 VM, 1 pending; not started\n' +
      'VM        OUTCOME  DURATION  DOWNTIME  COPIED  WRITTEN  ERROR\n' +
      'legacy01  pending  -         -         0 B     0 B\n\n' +
      'total: 1 VM, 1 pending in 1:07:10; 0 B copied, 0 B written, downtime 0:00 in all\n',
  );
});

test('HTML: every string from the summary is escaped, in text and in attributes', () => {
  const html = renderHtmlReport({ ...sampleRunSummary(), plan: 'p<l>an "&" \'q\'', runId: '<b>run</b>' });
  const name = 'db&lt;01&gt;&amp;&quot;x&apos;';
  const error = 'copy of disk0 failed: &lt;script&gt;alert(1)&lt;/script&gt; &amp; the host said &quot;no&quot;';
  assert.ok(!html.includes(EVIL_NAME) && !html.includes('<script') && !html.includes('<b>run'));
  assert.ok(html.includes(`<title>oneswap plan p&lt;l&gt;an &quot;&amp;&quot; &apos;q&apos;, run &lt;b&gt;run&lt;/b&gt;</title>`));
  // The lane (its label and its tooltip), the row's attribute and its cell.
  assert.ok(html.includes(`<g class="lane o-failed" data-vm="${name}"><text class="vm-label" x="14" y="`));
  assert.ok(html.includes(`>${name}<title>${name}</title></text>`));
  assert.ok(html.includes(`<tr data-vm="${name}"><td>wave-1</td><td class="vm">${name}</td>`));
  assert.ok(html.includes(`<td class="error">${error}</td>`));
  assert.equal(html.split(EVIL_ERROR).length, 1);
});

test('HTML: self-contained, nothing fetched, no script', () => {
  const html = renderHtmlReport(sampleRunSummary());
  for (const ref of ['http://', 'https://', 'src=', 'href=', 'url(', '<script', '<link', '@import', 'xmlns']) assert.ok(!html.includes(ref), ref);
  assert.ok(html.includes(`<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`));
});

test('HTML: a lane per VM in wave order, a rect per phase, failed phases marked, downtime under done VMs', () => {
  const s = sampleRunSummary();
  const html = renderHtmlReport(s);
  const got = lanes(html);
  assert.deepEqual(
    got.map((l) => l.vm),
    ['web01', 'web02', 'web03', 'app01', 'app02', 'db&lt;01&gt;&amp;&quot;x&apos;', 'files01', 'db02', 'db03', 'mq01', 'mq02', 'legacy01'],
  );
  for (const [i, lane] of got.entries()) {
    const vm = s.vms.find((v) => v.key === s.vms[i]!.key)!;
    assert.deepEqual([...lane.body.matchAll(/data-phase="([^"]*)"/g)].map((m) => m[1]), vm.phases.map((p) => p.phase), vm.key);
    assert.equal(elements(lane.body, 'rect', 'downtime').length, vm.downtimeMs === undefined ? 0 : 1, vm.key);
  }
  assert.equal(elements(html, 'rect', 'phase failed').length, 1);
  assert.equal(elements(html, 'path', 'failed-mark').length, 1);
  assert.deepEqual(elements(html, 'g', 'wave').map((g) => g.match(/data-wave="([^"]*)"/)![1]), ['wave-1', 'wave-2']);
});

test('HTML: a phase that took no time is still a sliver of 2 px; warm downtime ends with build', () => {
  const s = sampleRunSummary();
  const html = renderHtmlReport(s);
  const mq01 = lanes(html).find((l) => l.vm === 'mq01')!;
  assert.match(mq01.body, /<rect class="phase" data-phase="precheck" x="[\d.]+" y="[\d.]+" width="2" /);
  assert.match(mq01.body, /<rect class="phase" data-phase="convert" x="[\d.]+" y="[\d.]+" width="2" /);
  // app01: build ends 1810 s after the start of a 4030 s axis 960 px wide from x=230; down 295 s.
  const app01 = lanes(html).find((l) => l.vm === 'app01')!;
  const down = app01.body.match(/<rect class="downtime" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/)!;
  assert.equal(down[1], String(Math.round((230 + ((1810 - 295) / 4030) * 960) * 10) / 10));
  assert.equal(down[2], String(Math.round(((295 / 4030) * 960) * 10) / 10));
});

test('HTML: a pending VM has a lane with no bars and a row with no duration', () => {
  const html = renderHtmlReport(sampleRunSummary());
  const lane = lanes(html).find((l) => l.vm === 'legacy01')!;
  assert.equal(elements(lane.body, 'rect', '').length, 0);
  assert.match(lane.body, />pending: not started<\/text>$/);
  assert.ok(
    html.includes(
      '<tr data-vm="legacy01"><td>wave-2</td><td class="vm">legacy01</td><td>cold</td><td>esx02.lab</td><td class="o-pending">pending</td><td class="num">-</td><td class="num">-</td><td class="num">0 B</td><td class="num">0 B</td><td class="num">-</td><td class="num">-</td><td>-</td><td class="error"></td></tr>',
    ),
  );
});

test('HTML: a run with no VMs says so, without a chart', () => {
  const html = renderHtmlReport(empty());
  assert.ok(!html.includes('<svg'));
  assert.ok(html.includes('<p class="note">no VMs in this run</p>'));
  assert.ok(html.includes('<tr><td colspan="14">no VMs in this run</td></tr>'));
  assert.ok(html.includes('<dt>VMs</dt><dd><span class="counts">0 in all <span class="o-done">0 done</span><span class="o-failed">0 failed</span><span class="o-pending">0 pending</span><span class="o-skipped">0 skipped</span></span></dd>'));
});

test('HTML: 200 VMs keep lanes of 18 px, the chart grows downwards; VMs outside the waves listed are shown too', () => {
  const s = sampleRunSummary();
  const vms: VmRunRecord[] = Array.from({ length: 200 }, (_, i) => ({ ...s.vms[i % 11]!, key: `vm-${i}`, wave: i < 120 ? 'wave-1' : 'late' }));
  const html = renderHtmlReport({ ...s, waves: [{ ...s.waves[0]!, vms: ['vm-5', 'vm-3'] }], vms });
  const got = lanes(html).map((l) => l.vm);
  assert.equal(got.length, 200);
  assert.deepEqual(got.slice(0, 4), ['vm-5', 'vm-3', 'vm-0', 'vm-1']);
  assert.deepEqual(elements(html, 'g', 'wave').map((g) => g.match(/data-wave="([^"]*)"/)![1]), ['wave-1', 'late']);
  // Axis 24 + 2 wave rows of 22 + 200 lanes of 18 + axis 24.
  const height = 24 + 2 * 22 + 200 * 18 + 24;
  assert.ok(html.includes(`<svg class="timeline-chart" width="1210" height="${height}" viewBox="0 0 1210 ${height}"`));
  assert.equal((html.match(/<tr data-vm=/g) ?? []).length, 200);
});

test('HTML: the axis widens to a phase or a downtime outside the run, so no bar falls off it', () => {
  const s = sampleRunSummary();
  // app01 says it was down 2110 s, though its build ended 1810 s after the run's start: the axis
  // starts 300 s before the run and is 4330 s long.
  const vms = s.vms.map((v) => (v.key === 'app01' ? { ...v, downtimeMs: 2110 * 1000 } : v));
  const app01 = lanes(renderHtmlReport({ ...s, vms })).find((l) => l.vm === 'app01')!;
  assert.match(app01.body, new RegExp(`<rect class="downtime" x="230" y="[\\d.]+" width="${Math.round((2110 / 4330) * 960 * 10) / 10}" `));
  assert.equal(app01.body.match(/data-phase="precheck" x="([\d.]+)"/)![1], String(Math.round((230 + (300 / 4330) * 960) * 10) / 10));
});

test('HTML: a cold VM is down from its first phase, for its downtime', () => {
  const html = renderHtmlReport(sampleRunSummary());
  // web03 queued 400 s, then ran 522 s, off throughout; the axis is 4030 s over 960 px from x=230.
  const web03 = lanes(html).find((l) => l.vm === 'web03')!;
  assert.match(web03.body, new RegExp(`<rect class="downtime" x="230" y="[\\d.]+" width="${Math.round((922 / 4030) * 960 * 10) / 10}" `));
});
