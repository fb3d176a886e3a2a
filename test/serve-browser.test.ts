/**
 * The page of `halfstep serve` in headless Chromium (Debian's `chromium`, driven by playwright-core):
 * generate with one tier, see the image; run the 1-step student in the browser with onnxruntime-web
 * (WebAssembly: the GPU is off) and compare with the server; save a screenshot.
 * Skipped, with a message, where /usr/bin/chromium is missing (`apt-get install -y chromium`).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { startServer, type RunningServer } from '../src/serve/server.js';
import { cli, tinyArgs, tmp } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
/** Where the screenshot goes (runs/ is not tracked). */
export const SCREENSHOT = resolve('runs/screenshots/serve-page.png');

if (!HAVE_CHROMIUM) console.warn(`serve-browser.test.ts: skipped: ${CHROMIUM} is missing (install it with \`apt-get install -y chromium\`; .ci/run does so as root)`);

describe.skipIf(!HAVE_CHROMIUM)(`the web page in headless Chromium${HAVE_CHROMIUM ? '' : ` (skipped: ${CHROMIUM} is missing)`}`, () => {
  const dir = tmp('halfstep-serve-browser-');
  let s: RunningServer;
  let browser: BrowserContext;

  beforeAll(async () => {
    const r = await cli(['run', ...tinyArgs(dir), '--quiet']);
    expect(r.code).toBe(0);
    s = await startServer(join(dir, 'run'), { port: 0 });
    browser = await chromium.launchPersistentContext(tmp('halfstep-chromium-'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1100, height: 1200 },
    });
  });
  afterAll(async () => {
    await browser?.close();
    await s?.close();
  });

  test('pick a tier, generate, see the image and the latency; run the 1-step student in the browser; screenshot', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${s.url}/`);
    await page.locator('#tier-2step').check();
    await page.locator('#n').fill('64');
    await page.locator('#seed').fill('5');
    await page.locator('#generate').click();
    // (browser-side code as strings: the project compiles without the DOM library)
    await page.waitForFunction(
      "(() => { const img = document.getElementById('server-image'), c = document.getElementById('server-canvas');" +
        ' return (!img.hidden && img.complete && img.naturalWidth > 0) || (!c.hidden && c.width > 0); })()',
    );
    await expect.poll(() => page.locator('#server-caption').textContent()).toMatch(/^student-2: 2 step\(s\), n 64, seed 5 · [\d.]+ ms round trip$/);
    const row = page.locator('#timings tr').first();
    await expect.poll(() => row.locator('td').first().textContent()).toBe('server');
    expect(await row.locator('td').nth(1).textContent()).toBe('2step');

    // the fastest tier in the browser: with the GPU off, onnxruntime-web runs on WebAssembly
    await page.locator('#run-browser').click();
    await page.waitForFunction("/^(done|failed)/.test(document.getElementById('browser-status').textContent)", undefined, { timeout: 120_000 });
    expect(await page.locator('#browser-status').textContent()).toMatch(/^done: [\d.]+ ms on (wasm|webgpu)$/);
    const browserRow = page.locator('#timings tr').first();
    expect(await browserRow.locator('td').first().textContent()).toMatch(/^browser \((wasm|webgpu)\)$/);
    const note = (await browserRow.locator('td').last().textContent()) ?? '';
    const diff = /max \|browser − server\| ([\d.e+-]+)/.exec(note);
    expect(diff, note).not.toBeNull();
    // the browser runs the float32 variant of the graph (onnxruntime-web has no float64 kernels)
    expect(Number(diff![1])).toBeLessThan(1e-3);
    expect(await page.evaluate("(() => { const c = document.getElementById('browser-canvas'); return !c.hidden && c.width > 0; })()")).toBe(true);

    mkdirSync(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(errors).toEqual([]);
  });
});
