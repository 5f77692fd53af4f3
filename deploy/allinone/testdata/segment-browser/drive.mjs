// Drives Debian's chromium (headless, through puppeteer-core: no browser
// is downloaded) to PAGE, reports what the page did on one line of stdout,
// and closes the browser when stdin closes (TestSegmentBrowser).
import puppeteer from 'puppeteer-core'

const { PAGE, CHROMIUM } = process.env
const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], headless: true })
try {
  const page = await browser.newPage()
  const logs = [], urls = []
  page.on('request', (r) => urls.push(r.url()))
  page.on('console', (m) => logs.push(m.text()))
  page.on('requestfailed', (r) => logs.push('request failed: ' + r.url() + ' ' + (r.failure()?.errorText ?? '')))
  page.on('response', (r) => { if (r.status() >= 400) logs.push('HTTP ' + r.status() + ' ' + r.url()) })
  await page.goto(PAGE, { waitUntil: 'load' })
  await page.waitForFunction('window.result !== undefined', { timeout: 30000 })
  const result = await page.evaluate(() => window.result)
  // Leave the page: pagehide sends the beacon. The browser stays open
  // until the test has seen it stored and closes stdin.
  await page.goto('about:blank')
  console.log(JSON.stringify({ result, logs, urls }))
  process.stdin.resume()
  await new Promise((done) => process.stdin.on('end', done))
} finally {
  await browser.close()
}
