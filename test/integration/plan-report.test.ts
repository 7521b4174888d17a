// The HTML report of a plan run opened in a real browser (Debian's headless Chromium) with the
// network unusable: the DOM it built has a lane per VM and a row per VM with the summary's values,
// nothing injected by a VM's name or error; a screenshot shows the chart's colours.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderHtmlReport } from '../../lib/plan/index.js';
import { formatBytes, formatDuration } from '../../lib/progress/index.js';
import { chromiumSkip, runChromium } from '../support/chromium.js';
import { countColour, decodePng } from '../support/png.js';
import { EVIL_ERROR, EVIL_NAME, sampleRunSummary } from '../fixtures/plan-run-summary.js';

/** Text as the DOM holds it: Chromium's serialisation escapes & < > in text and " in attributes. */
function decode(s: string): string {
  return s.replace(/&(lt|gt|quot|amp|nbsp);/g, (_, e: string) => ({ lt: '<', gt: '>', quot: '"', amp: '&', nbsp: '\u00a0' })[e]!);
}

describe('plan run report in headless Chromium', { skip: chromiumSkip() }, () => {
  const summary = sampleRunSummary();
  let dir = '';
  let file = '';
  let html = '';

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oneswap-report-'));
    file = join(dir, 'report.html');
    html = renderHtmlReport(summary);
    await writeFile(file, html);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the file refers to nothing outside itself', () => {
    for (const ref of ['http://', 'https://', 'src=', 'href=', 'url(', '<script', '<link', '@import']) assert.ok(!html.includes(ref), ref);
  });

  test('the DOM: a lane per VM with its phases, a row per VM with its values, nothing injected', async () => {
    const dom = await runChromium(file, ['--dump-dom']);
    assert.equal((dom.match(/<script/g) ?? []).length, 0);
    assert.equal((dom.match(/<svg/g) ?? []).length, 1);

    const lanes = [...dom.matchAll(/<g class="lane o-([a-z]+)" data-vm="([^"]*)">(.*?)<\/g>/g)];
    assert.deepEqual(
      lanes.map((m) => [decode(m[2]!), m[1]]),
      summary.vms.map((v) => [v.key, v.outcome]),
    );
    for (const [i, m] of lanes.entries()) {
      assert.deepEqual([...m[3]!.matchAll(/<rect class="phase[^"]*" data-phase="([^"]*)"/g)].map((p) => p[1]), summary.vms[i]!.phases.map((p) => p.phase));
    }

    const rows = [...dom.matchAll(/<tr data-vm="([^"]*)">(.*?)<\/tr>/g)].map((m) => [...m[2]!.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => decode(c[1]!)));
    assert.deepEqual(
      rows,
      summary.vms.map((v) => [
        v.wave,
        v.key,
        v.mode,
        v.host ?? '-',
        v.outcome,
        v.outcome === 'pending' ? '-' : formatDuration(v.durationMs / 1000),
        v.downtimeMs === undefined ? '-' : formatDuration(v.downtimeMs / 1000),
        formatBytes(v.bytesCopied),
        formatBytes(v.bytesWritten),
        String(v.templateId ?? '-'),
        String(v.vmId ?? '-'),
        v.imageIds.length > 0 ? v.imageIds.join(', ') : '-',
        v.error ?? '',
      ]),
    );
    // The evil strings are text in the page, in full, once as a label and once as a cell.
    assert.ok(rows.some((r) => r[1] === EVIL_NAME && r[12] === EVIL_ERROR));
    assert.ok(dom.includes(`<td class="error">copy of disk0 failed: &lt;script&gt;alert(1)&lt;/script&gt; &amp; the host said "no"</td>`));
  });

  test('the screenshot shows the chart: phase bars, the failed mark and downtime in their colours', async () => {
    const png = join(dir, 'report.png');
    await runChromium(file, ['--window-size=1400,1100', '--hide-scrollbars', '--force-color-profile=srgb', `--screenshot=${png}`]);
    const img = decodePng(await readFile(png));
    assert.deepEqual([img.width, img.height], [1400, 1100]);
    // The legend's swatch of a colour is 12 × 12 px; more pixels of it than that are bars.
    for (const colour of ['#1f77b4', '#66c2a5', '#ff7f0e']) assert.ok(countColour(img, colour) > 144, colour);
    assert.ok(countColour(img, '#d62728') > 0, 'failed mark');
    assert.ok(countColour(img, '#222222') > 12 * 4, 'downtime');
  });
});
