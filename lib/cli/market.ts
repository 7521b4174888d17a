// `oneswap market refresh ID`: a oneswap marketplace lists the vCenter's VMs now, not at oned's
// next market monitor cycle (every MONITORING_INTERVAL_MARKET, 600 s by default). oned monitors a
// marketplace outside its cycle only when one.market.enable turns a DISABLED one on, so the
// command disables it (which drops its apps) and enables it, then waits for the listing: the stock
// `onemarket enable` returns before the monitor ran and its failure shows only in oned.log.

import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import { DRIVER_NAME } from '../install/index.js';
import type { OneClient, OneMarketplace } from '../one/index.js';
import { connectOne } from './connect.js';
import { positiveInt } from './import.js';

export interface MarketRefreshCliOptions {
  timeout: string;
  endpoint?: string;
}

export async function runMarketRefresh(idText: string, o: MarketRefreshCliOptions, signal: AbortSignal): Promise<string> {
  const id = positiveInt(idText, 'marketplace id', true);
  const timeoutMs = positiveInt(o.timeout, '--timeout') * 1000;
  const one = await connectOne(o.endpoint);
  try {
    const market = await one.marketplace(id);
    if (market.marketMad !== DRIVER_NAME)
      throw new OneswapError('usage', `marketplace ${id} (${market.name}) has MARKET_MAD ${market.marketMad || '(none)'}, not ${DRIVER_NAME}: oneswap refreshes only its own marketplaces`, {
        hint: `for another marketplace: onemarket disable ${id}; onemarket enable ${id}`,
      });
    if (market.state === 'ENABLED') await one.marketplaceEnable(id, false);
    const enabledAt = Date.now();
    await one.marketplaceEnable(id, true);
    const listed = await waitForApps(one, market, timeoutMs, signal);
    return `marketplace ${id} (${market.name}): ${listed.appIds.length} apps listed ${Math.round((Date.now() - enabledAt) / 1000)} s after it was enabled\n`;
  } finally {
    one.close();
  }
}

/** The marketplace once its monitor listed something; the monitor's own failure reaches only oned.log. */
async function waitForApps(one: OneClient, market: OneMarketplace, timeoutMs: number, signal: AbortSignal): Promise<OneMarketplace> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const now = await one.marketplace(market.id);
    if (now.appIds.length > 0) return now;
    if (Date.now() >= end)
      throw new OneswapError(
        'remote',
        `marketplace ${market.id} (${market.name}) is enabled but listed nothing within ${timeoutMs / 1000} s: its monitor failed (oned.log: "Error monitoring marketplace ${market.id}"), or the vCenter has no VM with disks, or another marketplace lists the same VMs`,
      );
    try {
      await sleep(500, undefined, { signal });
    } catch {
      throw new OneswapError('interrupted', `stopped waiting for marketplace ${market.id} (${market.name}) to list its VMs (it is enabled)`);
    }
  }
}
