// Loads canary-replay report pages in headless Chromium (Debian's `chromium`), fails on any
// console error or warning, page error, dialog (a script that ran), network request or image that
// did not decode, checks the verdict banner is shown, and saves a full-page screenshot and a
// printed PDF of each. Takes run reports (report.html) and tuning reports (tune.html) alike.
//
//   node check-report.mjs OUT_DIR REPORT.html...
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { basename, dirname, join, resolve } from 'node:path';
import { mkdirSync } from 'node:fs';

const [outDir, ...pages] = process.argv.slice(2);
if (!outDir || pages.length === 0) {
  console.error('usage: node check-report.mjs OUT_DIR REPORT.html...');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let failed = false;
for (const path of pages) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', async (d) => { problems.push(`a dialog opened (a script ran): ${d.message()}`); await d.dismiss(); });
  page.on('request', (r) => { const url = r.url(); if (!url.startsWith('file:') && !url.startsWith('data:')) problems.push(`network request: ${url}`); });
  page.on('requestfailed', (r) => problems.push(`failed to load: ${r.url().slice(0, 80)}`));
  const url = pathToFileURL(resolve(path)).href;
  await page.goto(url, { waitUntil: 'load' });
  const banner = (await page.locator('#verdict').innerText()).trim();
  if (!/PROMOTED|ROLLED BACK|HELD|TUNED POLICY FOUND|NO FEASIBLE POLICY/.test(banner)) problems.push(`the verdict banner shows no outcome: ${banner.slice(0, 120)}`);
  if (!(await page.locator('#verdict').isVisible())) problems.push('the verdict banner is not visible');
  const images = await page.$$eval('img', (imgs) => imgs.map((i) => ({ ok: i.complete && i.naturalWidth > 0, alt: i.alt })));
  if (images.length === 0) problems.push('no charts on the page');
  for (const image of images.filter((i) => !i.ok)) problems.push(`chart did not decode: ${image.alt}`);
  if ((await page.$$('script')).length > 0) problems.push('the page has script elements');
  const name = basename(dirname(resolve(path)));
  const shot = join(outDir, `${name}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  await page.pdf({ path: join(outDir, `${name}.pdf`), format: 'A4', printBackground: true });
  if (problems.length > 0) {
    failed = true;
    console.error(`FAIL ${path}:\n  ${problems.join('\n  ')}`);
  } else {
    console.log(`ok   ${path}: ${images.length} charts, banner "${banner.split('\n')[0]}"; screenshot ${shot}`);
  }
  await page.close();
}
await browser.close();
process.exit(failed ? 1 : 0);
