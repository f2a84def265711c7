/**
 * `npm run test:page`: results/index.html in a real browser. Rebuilds the
 * report and the page from the summaries in results/, opens the page from
 * the file system in headless Chromium (Debian's `chromium`, or the one
 * CHROMIUM_PATH names) and checks that every chart drew its series with no
 * console error and no request leaving the file system, that every raw
 * histogram link resolves, and keeps a screenshot in results/index.png.
 * Not part of `npm test`, which needs no browser.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { buildReport } from '../bench/report.js';
import { PROJECT_ROOT } from '../src/config.js';

const RESULTS = path.resolve(process.env.OUTBOX_BENCH_RESULTS_DIR ?? path.join(PROJECT_ROOT, 'results'));
const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
// Rationale: ECharts draws on the next frames after setOption; a page of a
// few dozen charts on 2 cores is drawn well within this.
const DRAW_TIMEOUT_MS = 30_000;

function chromiumPath(): string {
  const named = process.env.CHROMIUM_PATH;
  if (named) return named;
  const found = CANDIDATES.find((candidate) => existsSync(candidate));
  if (!found) throw new Error(`no Chromium found (tried ${CANDIDATES.join(', ')}): install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH`);
  return found;
}

interface DrawnChart {
  name: string;
  expectedSeries: number;
  drawnSeries: number;
  points: number;
}

describe('results/index.html in Chromium', () => {
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];
  const offline: string[] = [];
  const failed: string[] = [];

  before(async () => {
    buildReport(RESULTS);
    browser = await puppeteer.launch({
      executablePath: chromiumPath(),
      headless: true,
      // --no-sandbox: CI and this machine run as root, where Chromium's sandbox cannot start.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(String(error)));
    page.on('request', (request) => {
      if (!request.url().startsWith('file:') && !request.url().startsWith('data:')) offline.push(request.url());
    });
    page.on('requestfailed', (request) => failed.push(`${request.url()}: ${request.failure()?.errorText ?? 'failed'}`));
    await page.goto(pathToFileURL(path.join(RESULTS, 'index.html')).href, { waitUntil: 'load' });
    await page.waitForFunction('Array.isArray(window.outboxBenchCharts)', { timeout: DRAW_TIMEOUT_MS });
  });

  after(async () => {
    await browser?.close();
  });

  it('draws every chart of the report with all of its series', async () => {
    const readme = readFileSync(path.join(RESULTS, 'README.md'), 'utf8');
    const images = [...readme.matchAll(/!\[[^\]]*\]\(charts\/([A-Za-z0-9._-]+)\.png\)/g)].map((m) => m[1]!);
    assert.ok(images.length > 0, 'the report has charts');
    const drawn = (await page.evaluate('window.outboxBenchCharts')) as DrawnChart[];
    assert.deepEqual(drawn.map((c) => c.name).sort(), [...new Set(images)].sort(), 'one live chart per chart image of the report');
    for (const chart of drawn) {
      assert.ok(chart.expectedSeries > 0, `${chart.name} has series`);
      assert.equal(chart.drawnSeries, chart.expectedSeries, `${chart.name} drew all its series`);
      assert.ok(chart.points > 0, `${chart.name} has data`);
    }
    // Each chart painted a canvas of its container's size.
    const canvases = (await page.evaluate(`[...document.querySelectorAll('[data-chart] canvas')].map((c) => ({ width: c.width, height: c.height }))`)) as { width: number; height: number }[];
    assert.ok(canvases.length >= drawn.length, `${canvases.length} canvases for ${drawn.length} charts`);
    assert.ok(canvases.every((c) => c.width > 0 && c.height > 0));
  });

  it('shows values on hover', async () => {
    const chart = (await page.$('[data-chart]'))!;
    const name = await chart.evaluate((node) => node.getAttribute('data-chart'));
    // hover() scrolls the chart into view and moves the mouse to its middle.
    await chart.hover();
    // ECharts' tooltip is an absolutely placed div inside the chart's container, shown on hover.
    const tooltip = await page.waitForFunction(
      `(() => {
        const tip = [...document.querySelectorAll('[data-chart="${name}"] div')].find((div) => div.style.position === 'absolute' && div.style.display !== 'none' && /\\d/.test(div.textContent));
        return tip ? tip.textContent : false;
      })()`,
      { timeout: DRAW_TIMEOUT_MS },
    );
    assert.match(String(await tooltip.jsonValue()), /\d/);
  });

  it('links every raw histogram to a file that exists', async () => {
    const links = await page.$$eval('#raw-histograms ~ ul a', (anchors) => anchors.map((a) => a.getAttribute('href')!));
    assert.ok(links.length > 0, 'the page links .hgrm files');
    for (const link of links) assert.ok(existsSync(path.join(RESULTS, link)), `${link} exists`);
  });

  it('loads nothing from the network and logs no error', async () => {
    assert.deepEqual(offline, [], 'requests outside the file system');
    assert.deepEqual(failed, [], 'failed requests');
    assert.deepEqual(consoleErrors, [], 'console errors');
  });

  it('keeps a screenshot in results/index.png', async () => {
    const file = path.join(RESULTS, 'index.png');
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: file as `${string}.png`, clip: { x: 0, y: 0, width: 1280, height: 2_400 }, captureBeyondViewport: true });
    assert.ok(readFileSync(file).length > 10_000, 'a screenshot with content');
  });
});
