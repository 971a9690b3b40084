/// <reference lib="dom" />
/**
 * The live page in a real browser: Debian's chromium driven by playwright-core, against a real
 * server on loopback. The page asks for a token, refuses a wrong one, and with a read token
 * shows numbers that move while a bounded load runs (draws/s, totals, per-shard rows, a pool's
 * stock going down). A screenshot is written to _tmp/dashboard.png (RPE_SCREENSHOT=docs/dashboard.png
 * refreshes the README's).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RewardPoolClient } from '../../dist/src/client/index.js';
import { DrawEngine } from '../helpers/engine.js';
import { createServer, keys, root, tokens, type ServiceApp } from '../helpers/server.js';
import { tmpDir } from '../helpers/tmp.js';

const kChromium = '/usr/bin/chromium';
// The flags of a quiet, deterministic headless run (no sandbox: CI runs as root).
const kArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let engine: DrawEngine;
let app: ServiceApp;
let url: string;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  if (!existsSync(kChromium)) throw new Error(`${kChromium} is missing: apt-get install -y chromium (.ci/run does it)`);
  engine = await DrawEngine.open({ dir: tmpDir('dashboard'), shards: 2, segmentBytes: 1 << 20, sync: 'always' });
  app = createServer(engine, { auth: { keys } });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
  await engine.createPool('spring', [
    { id: 'diamond', weight: 2, quantity: 60_000 },
    { id: 'gold', weight: 10, quantity: 400_000 },
    { id: 'mud', weight: 70, quantity: -1 },
  ]);
  await engine.createPool('autumn', [
    { id: 'leaf', weight: 5, quantity: 8_000_000 },
    { id: 'acorn', weight: 1, quantity: 1_500_000 },
  ]);
  // A fresh profile per run: launchPersistentContext is playwright's way to pass --user-data-dir.
  context = await chromium.launchPersistentContext(tmpDir('chromium-profile'), {
    executablePath: kChromium,
    headless: true,
    args: kArgs,
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] ?? (await context.newPage());
}, 60_000);

afterAll(async () => {
  await context?.close();
  await app?.close();
});

const text = (selector: string): Promise<string> => page.locator(selector).innerText();

/** Draws from a client until stopped: coalesced draw() bursts and drawMany calls, bounded. */
function startLoad(): { stop: () => Promise<number> } {
  const client = new RewardPoolClient({ url, token: tokens.draw });
  let running = true;
  let draws = 0;
  const loop = (async () => {
    for (let round = 0; running && round < 10_000; round++) {
      await Promise.all([
        ...Array.from({ length: 500 }, () => client.draw('spring')),
        client.drawMany('autumn', 2_000),
      ]);
      draws += 2_500;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      await client.close();
      return draws;
    },
  };
}

describe('live page', () => {
  it('asks for a token and refuses a wrong one', async () => {
    await page.goto(url);
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.locator('#board').isHidden()).toBe(true);
    await page.fill('#token', 'tok-wrong-0123456789abcdef');
    await page.click('#login button[type=submit]');
    await page.locator('#login-error').filter({ hasText: 'matches no configured API key' }).waitFor();
    expect(await text('#status')).toBe('token refused');
    // A token without the read scope is refused too.
    await page.fill('#token', tokens.draw);
    await page.click('#login button[type=submit]');
    await page.locator('#login-error').filter({ hasText: 'lacks the scope "read"' }).waitFor();
  });

  it('with a read token, its numbers move while a load runs; screenshot for the README', async () => {
    await page.fill('#token', tokens.read);
    await page.click('#login button[type=submit]');
    await page.locator('#board').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => sessionStorage.getItem('rpe-dashboard-token'))).toBe(tokens.read);
    await page.locator('#shards tbody tr').nth(1).waitFor();
    const totalBefore = Number((await text('#draws-total')).replace(/,/g, ''));
    const stockBefore = Number(await page.locator('[data-pool="spring"] .qty').nth(1).getAttribute('data-quantity'));

    const load = startLoad();
    try {
      // Two successive readings at least a second apart, both under load.
      await page.waitForFunction(() => Number(document.getElementById('draws-total')!.textContent!.replace(/,/g, '')) > 20_000, undefined, { timeout: 20_000 });
      const first = Number((await text('#draws-total')).replace(/,/g, ''));
      await sleep(1_500);
      const second = Number((await text('#draws-total')).replace(/,/g, ''));
      expect(second).toBeGreaterThan(first);
      expect(first).toBeGreaterThan(totalBefore);
      await page.waitForFunction(() => /[1-9]/.test(document.getElementById('draws-rate')!.textContent!), undefined, { timeout: 10_000 });
      const rows = await page.locator('#shards tbody tr').allInnerTexts();
      expect(rows).toHaveLength(2);
      for (const row of rows) expect(row).toContain('running');
      expect(await text('#sync-latency')).toMatch(/(µs|ms)$/);
      const stockAfter = Number(await page.locator('[data-pool="spring"] .qty').nth(1).getAttribute('data-quantity'));
      expect(stockAfter).toBeLessThan(stockBefore);
      await sleep(3_000); // a longer sparkline for the picture
      // _tmp by default, so a test run leaves the tree clean; RPE_SCREENSHOT=docs/dashboard.png
      // refreshes the README's picture.
      await page.screenshot({ path: join(root, process.env.RPE_SCREENSHOT ?? '_tmp/dashboard.png'), fullPage: true });
    } finally {
      const draws = await load.stop();
      console.log(`load: ${draws} draws`);
    }
    expect(await text('#pool-count')).toBe('(2)');
  });
});
