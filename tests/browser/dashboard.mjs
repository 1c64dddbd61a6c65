// Drives the dashboard in headless Chromium (Debian's, through playwright-core): logs in, scales web to 2 and sees
// two dynos, rolls back and sees the new release, sees a log line arrive and the throughput chart rise under a
// burst of requests. Saves screenshots. Run by tests/it/dashboard.rs, which passes everything as environment.
import { createRequire } from 'node:module';
import http from 'node:http';

const { TOOLS, API, TOKEN, APP, ROUTER, SHOTS } = process.env;
const { chromium } = createRequire(`${TOOLS}/`)('playwright-core');
const STEP = 30_000;

function burst(n) {
  const [host, port] = ROUTER.split(':');
  const one = () => new Promise((resolve) => {
    const req = http.request({ host, port, path: '/', headers: { Host: `${APP}.localhost` } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', resolve);
    req.end();
  });
  return Array.from({ length: n }, one).reduce((p, next) => p.then(next), Promise.resolve());
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  page.setDefaultTimeout(STEP);
  page.on('dialog', (dialog) => dialog.accept());
  const problems = [];
  page.on('pageerror', (e) => problems.push(String(e)));

  await page.goto(`${API}/dashboard`);
  await page.fill('#token', 'not-the-token');
  await page.click('#login-form button');
  await page.waitForSelector('#login-error:text("wrong API token")');
  await page.fill('#token', TOKEN);
  await page.click('#login-form button');
  await page.click(`#apps a[data-app="${APP}"]`);
  await page.waitForSelector('#dynos tr[data-dyno="web.1"]');
  console.log('logged in, the app is open');

  // Scale web to 2: two dynos.
  await page.fill('input.quantity[data-type="web"]', '2');
  await page.click('button.scale[data-type="web"]');
  await page.waitForSelector('#dynos tr[data-dyno="web.2"] td.state-up');
  console.log('scaled to two web dynos');

  // Roll back: a new release on top.
  const top = await page.$eval('#releases tr[data-version]', (tr) => Number(tr.dataset.version));
  await page.click('#releases button.rollback');
  await page.waitForSelector(`#releases tr[data-version="${top + 1}"]`);
  const description = await page.textContent(`#releases tr[data-version="${top + 1}"] td:nth-child(2)`);
  if (!/Rollback/i.test(description)) throw new Error(`the new release says ${description}`);
  console.log(`rolled back: v${top + 1} "${description}"`);

  // Requests: their router lines arrive in the live logs, and the throughput chart rises.
  await burst(40);
  await page.waitForFunction(() => document.querySelector('#logs').textContent.includes('status=200'));
  await page.waitForFunction(() => Number(document.querySelector('#chart-throughput').dataset.total) >= 40);
  console.log('log lines and the throughput chart followed the burst');

  await page.screenshot({ path: `${SHOTS}/dashboard.png`, fullPage: true });
  if (problems.length) throw new Error(`errors in the page: ${problems.join('; ')}`);
  console.log('ok');
} finally {
  await browser.close();
}
