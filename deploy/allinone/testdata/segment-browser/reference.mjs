// Opens the edge's API reference (PAGE) in Debian's chromium and reports
// on one line what it rendered, and every console message (a Content-
// Security-Policy violation is one) and failed request (TestAPIReference).
import puppeteer from 'puppeteer-core'

const { PAGE, CHROMIUM } = process.env
const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], headless: true })
try {
  const page = await browser.newPage()
  const logs = [], urls = []
  page.on('request', (r) => urls.push(r.url()))
  page.on('console', (m) => logs.push(m.type() + ': ' + m.text()))
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message))
  page.on('requestfailed', (r) => logs.push('request failed: ' + r.url()))
  await page.goto(PAGE, { waitUntil: 'load' })
  await page.waitForFunction(() => document.querySelectorAll('details[data-search]').length > 0, { timeout: 30000 })
  const operations = await page.$$eval('details[data-search]', (ds) => ds.length)
  await page.type('#filter', 'dead-letters')
  const filtered = await page.$$eval('details[data-search]', (ds) => ds.filter((d) => !d.hidden).length)
  console.log(JSON.stringify({ operations, filtered, logs, urls }))
} finally {
  await browser.close()
}
