// Drives the admin console (ROOT/console/) in Debian's chromium as a person
// would, checks what it shows against the API, runs axe-core on every page
// at 1280 and 390 px, saves a screenshot of each page into SHOTS, and
// prints one JSON line: {failures, logs, pages} (TestConsole).
import puppeteer from 'puppeteer-core'
import { readFileSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'

const { ROOT, ADMIN, CHROMIUM, SHOTS, DLQ_PARTNER } = process.env
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
mkdirSync(SHOTS, { recursive: true })
const run = Date.now().toString(36)
const failures = []
const logs = []
const pages = {}
const fail = (msg) => failures.push(msg)

async function api (method, path, body, cred) {
  const headers = { 'Content-Type': 'application/json' }
  if (cred && cred.startsWith('vtk_')) headers['X-Api-Key'] = cred
  else headers.Authorization = 'Bearer ' + (cred || ADMIN)
  const res = await fetch(ROOT + '/api/v1' + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const env = await res.json().catch(() => ({}))
  return { status: res.status, data: env.data, error: env.error }
}
const until = async (what, fn, ms = 15000) => {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) { fail('timed out waiting for ' + what); return null }
    await new Promise((resolve) => setTimeout(resolve, 100)) // poll
  }
}

const browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'], headless: true })
const requests = []
try {
  const page = await browser.newPage()
  // The two refusals the script provokes (a wrong token, a bad code) are
  // logged by chromium itself; anything else is a defect.
  let expected = 0
  page.on('console', (m) => {
    if (expected > 0 && /Failed to load resource: .* status of (400|401)/.test(m.text())) { expected--; return }
    if (m.type() === 'error' || m.type() === 'warn') logs.push(m.type() + ': ' + m.text())
  })
  page.on('pageerror', (e) => logs.push('pageerror: ' + e.message))
  page.on('requestfailed', (r) => { if (!r.url().includes('/tail')) logs.push('request failed: ' + r.url() + ' ' + (r.failure() || {}).errorText) })
  page.on('request', (r) => requests.push(r.method() + ' ' + r.url()))
  page.on('dialog', (d) => { logs.push('native dialog: ' + d.message()); d.dismiss() })
  await page.setViewport({ width: 1280, height: 900 })
  // The browser is in New York; the reports below ask for Tokyo's days.
  await page.emulateTimezone('America/New_York')

  const text = (sel) => page.$eval(sel, (el) => el.textContent)
  const fill = async (form, values) => {
    for (const [name, value] of Object.entries(values)) {
      const sel = form + ' [name="' + name + '"]'
      // A page may draw its forms after its first API answer: wait for it.
      await page.waitForSelector(sel, { timeout: 15000 })
      await page.$eval(sel, (el) => { el.value = '' })
      await page.type(sel, String(value))
    }
  }
  const go = async (hash, sel) => {
    await page.evaluate((h) => { location.hash = h }, hash)
    await page.waitForSelector(sel, { timeout: 15000 })
  }
  // audit: axe-core and the layout at both widths, and a screenshot of each.
  const audit = async (name) => {
    const result = { violations: [] }
    for (const width of [1280, 390]) {
      await page.setViewport({ width, height: 900 })
      await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => resolve())))
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
      if (overflow > 1) fail(name + ' at ' + width + ' px is ' + overflow + ' px wider than the window')
      if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(axeSource)
      const v = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations
        .map((x) => ({ id: x.id, impact: x.impact, help: x.help, nodes: x.nodes.slice(0, 3).map((n) => n.target.join(' ')) })))
      for (const x of v) {
        result.violations.push(Object.assign({ width }, x))
        if (x.impact === 'serious' || x.impact === 'critical') fail(name + ' at ' + width + ' px: ' + x.id + ' (' + x.impact + '): ' + x.help + ' ' + x.nodes.join(', '))
      }
      await page.evaluate(() => document.getElementById('toast').replaceChildren()) // feedback is checked elsewhere; the picture shows the page
      await page.screenshot({ path: SHOTS + '/' + name + '-' + width + '.png', fullPage: true })
    }
    await page.setViewport({ width: 1280, height: 900 })
    pages[name] = result
  }

  // Sign in: a wrong token is refused with the API's message.
  await page.goto(ROOT + '/console/', { waitUntil: 'load' })
  await page.waitForSelector('#credential')
  await audit('signin')
  expected++
  await page.type('#credential', 'not-the-admin-token-at-all')
  await page.click('form.signin button[type=submit]')
  await page.waitForSelector('.form-error')
  if (!/admin/i.test(await text('.form-error'))) fail('a wrong token shows: ' + await text('.form-error'))
  await fill('form.signin', { credential: ADMIN })
  await page.click('form.signin button[type=submit]')
  await page.waitForFunction(() => document.querySelector('h1') && document.querySelector('h1').textContent === 'Partners', { timeout: 15000 })
  if (await page.evaluate(() => location.href.includes(sessionStorage.getItem('vt.credential')))) fail('the credential is in the URL')
  if (!(await page.evaluate(() => sessionStorage.getItem('vt.credential')))) fail('the credential is not in sessionStorage')

  // The keyboard: on a fresh load (still signed in), the first Tab stop
  // skips to the content.
  await page.reload({ waitUntil: 'load' })
  await page.waitForFunction(() => document.querySelector('h1') && document.querySelector('h1').textContent === 'Partners', { timeout: 15000 })
  await page.keyboard.press('Tab')
  if ((await page.evaluate(() => document.activeElement.className)) !== 'skip') fail('the first Tab stop is not the skip link')
  const hashBefore = await page.evaluate(() => { document.querySelector('main h1').dataset.mark = 'before skip'; return location.hash })
  await page.keyboard.press('Enter')
  await until('focus on the content', async () => page.evaluate(() => document.activeElement.id === 'main'))
  // ... and nothing else: the page is not routed again (the hash belongs to
  // the router; a link to "#main" would change it and redraw the page).
  const after = await page.evaluate(() => ({ hash: location.hash, mark: (document.querySelector('main h1') || {}).dataset?.mark }))
  if (after.hash !== hashBefore || after.mark !== 'before skip') fail('the skip link navigated: hash ' + after.hash + ' (was ' + hashBefore + '), page redrawn: ' + (after.mark !== 'before skip'))

  // A partner: a bad code shows the field's error next to it, a good one is created.
  expected++
  await fill('form[aria-labelledby=new-partner]', { code: 'bad code!', name: 'Bad' })
  await page.click('form[aria-labelledby=new-partner] button[type=submit]')
  await page.waitForSelector('form[aria-labelledby=new-partner] .field-error', { timeout: 10000 })
  pages.fieldError = await text('form[aria-labelledby=new-partner] .field-error')
  const code = 'console-' + run
  // A long name without spaces (200 are allowed) must not widen the page.
  await fill('form[aria-labelledby=new-partner]', { code, name: 'Console' + run + 'x'.repeat(150) })
  await page.click('form[aria-labelledby=new-partner] button[type=submit]')
  await page.waitForSelector('form[aria-labelledby=new-sub]')
  const partnerID = await page.evaluate(() => location.hash.split('/')[2])
  if ((await api('GET', '/partners/' + partnerID)).data.code !== code) fail('the partner the console created is not in the API')

  // A sub-system.
  await fill('form[aria-labelledby=new-sub]', { code: 'web', name: 'Web site' })
  await page.click('form[aria-labelledby=new-sub] button[type=submit]')
  await page.waitForSelector('tr[data-sub=web]')
  await audit('sub-systems')

  // A key with both scopes: shown once, with its warning and copy button.
  await go('#/partners/' + partnerID + '/keys', 'form[aria-labelledby=new-key]')
  await fill('form[aria-labelledby=new-key]', { name: 'console key' })
  await page.click('form[aria-labelledby=new-key] input[value=report]')
  await page.click('form[aria-labelledby=new-key] button[type=submit]')
  await page.waitForSelector('.secret output[data-secret="API key"]')
  const key = (await text('.secret output[data-secret="API key"]')).trim()
  if (!key.startsWith('vtk_')) fail('the new key shown is ' + key)
  if (!/shown this once/.test(await text('.secret'))) fail('no warning that the key is shown once')
  await audit('keys')

  // The live tail shows events as they are stored.
  await go('#/partners/' + partnerID + '/tail', '#tail-status')
  await until('the tail to connect', async () => /Watching/.test(await text('#tail-status')))
  const events = []
  const longType = 'ev_' + 'x'.repeat(60) // wraps in the top list, not the page
  for (let i = 0; i < 5; i++) events.push({ id: 'ev-' + run + '-' + i, subSystemCode: 'web', eventType: i < 3 ? 'signup' : i === 3 ? 'click' : longType, userId: 'u' + (i % 2) })
  const sent = await api('POST', '/tracking/bulk', { events }, key)
  if (sent.status !== 202) fail('sending events: ' + sent.status + ' ' + JSON.stringify(sent.error))
  await until('5 events in the tail', async () => (await page.$$('#tail-rows tr[data-id^="ev-' + run + '"]')).length === 5)
  await audit('tail')
  await page.click('#tail-toggle') // stop it

  // Reports: the chart's numbers are the API's.
  await until('the API to count the events', async () => {
    const r = await api('GET', '/reports/partners/' + partnerID + '?from=' + new Date(Date.now() - 3600e3).toISOString())
    return r.data && r.data.totalEvents === 5
  })
  // Today in Tokyo, by day: one bucket, its range Tokyo's midnight to
  // midnight, whatever the browser's zone.
  const tokyo = new Date(Date.now() + 9 * 3600e3).toISOString().slice(0, 10) // Tokyo has no DST: UTC+9
  const tomorrow = new Date(Date.parse(tokyo) + 86400e3).toISOString().slice(0, 10)
  await go('#/partners/' + partnerID + '/reports?' + new URLSearchParams({ granularity: 'day', tz: 'Asia/Tokyo', from: tokyo + 'T00:00', to: tomorrow + 'T00:00' }), '#report')
  const q = new URLSearchParams(await page.$eval('#report', (el) => el.dataset.query))
  const wantFrom = new Date(Date.parse(tokyo + 'T00:00:00+09:00')).toISOString()
  const wantTo = new Date(Date.parse(tomorrow + 'T00:00:00+09:00')).toISOString()
  if (q.get('from') !== wantFrom || q.get('to') !== wantTo || q.get('tz') !== 'Asia/Tokyo' || q.get('granularity') !== 'day') fail('the controls asked for ' + q + ', want from ' + wantFrom + ' to ' + wantTo + ' in Asia/Tokyo by day')
  const ui = await page.evaluate(() => ({
    query: document.querySelector('#report').dataset.query,
    total: Number(document.querySelector('#report').dataset.total),
    totalShown: document.querySelector('#total').textContent,
    users: document.querySelector('#users') && document.querySelector('#users').textContent,
    bars: [...document.querySelectorAll('figure.chart rect.bar')].map((r) => Number(r.dataset.count)),
    types: [...document.querySelectorAll('ol[aria-labelledby=top-types] li')].map((li) => [li.dataset.name, Number(li.dataset.count)]),
    subs: [...document.querySelectorAll('ol[aria-labelledby=top-subs] li')].map((li) => [li.dataset.name, Number(li.dataset.count)])
  }))
  const apiRep = (await api('GET', '/reports/partners/' + partnerID + '?' + new URLSearchParams({ from: wantFrom, to: wantTo, tz: 'Asia/Tokyo', granularity: 'day', top: '10' }))).data
  if (apiRep.timeSeries.length !== 1) fail('Tokyo\'s day is ' + apiRep.timeSeries.length + ' buckets')
  pages.report = { ui, api: { total: apiRep.totalEvents, uniqueUsers: apiRep.uniqueUsers, points: apiRep.timeSeries.length } }
  if (ui.total !== 5 || apiRep.totalEvents !== 5 || ui.totalShown !== '5') fail('report total: console ' + ui.total + ' (' + ui.totalShown + '), API ' + apiRep.totalEvents)
  if (JSON.stringify(ui.bars) !== JSON.stringify(apiRep.timeSeries.map((p) => p.count))) fail('chart bars differ from the API series')
  if (JSON.stringify(ui.types) !== JSON.stringify(apiRep.topEventTypes.map((t) => [t.eventType, t.eventCount]))) fail('top types differ: ' + JSON.stringify(ui.types))
  if (JSON.stringify(ui.subs) !== JSON.stringify([['web', 5]])) fail('top sub-systems: ' + JSON.stringify(ui.subs))
  if (ui.users !== String(apiRep.uniqueUsers) || apiRep.uniqueUsers !== 2) fail('unique users: console ' + ui.users + ', API ' + apiRep.uniqueUsers)
  await page.click('#report details summary')
  const tableRows = await page.$$eval('#report details tbody tr', (rs) => rs.map((r) => Number(r.dataset.count)))
  if (JSON.stringify(tableRows) !== JSON.stringify(ui.bars)) fail('the table view differs from the chart')
  await page.click('#report details summary') // closed again for the screenshot
  await audit('reports')

  // Rotate the key with no grace: the new key is shown, the old one refused.
  await go('#/partners/' + partnerID + '/keys', 'tr[data-key="console key"][data-status=Active]')
  await page.click('tr[data-key="console key"][data-status=Active] form button[type=submit]')
  await page.waitForSelector('.secret output[data-secret="API key"]')
  const rotated = (await text('.secret output[data-secret="API key"]')).trim()
  if (rotated === key || !rotated.startsWith('vtk_')) fail('rotation showed ' + rotated)
  const ingest = (k, id) => api('POST', '/tracking', { id, subSystemCode: 'web', eventType: 'after' }, k)
  await until('the old key to be refused', async () => (await ingest(key, 'old-' + run)).status === 401)
  if ((await ingest(rotated, 'new-' + run)).status !== 202) fail('the rotated key does not ingest')
  // Revoke it, through the confirmation dialog.
  await page.click('tr[data-key="console key"][data-status=Active] button.danger')
  await page.waitForSelector('dialog#confirm[open]')
  await audit('revoke-dialog')
  await page.click('#confirm-ok')
  await until('the revoked key to be refused', async () => {
    const r = await ingest(rotated, 'revoked-' + run)
    return r.status === 401 && r.error && r.error.code === 'api_key_revoked'
  })
  await until('no active key left', async () => (await page.$$('tr[data-key="console key"][data-status=Active]')).length === 0)

  // Dead letters (none: every event was stored) ...
  await go('#/partners/' + partnerID + '/dead-letters', 'section[aria-label="Dead letters"]')
  // The section is drawn before its list arrives: wait for the answer.
  await until('the empty dead-letter list', async () => /No dead letters/.test(await text('section[aria-label="Dead letters"]')))
  // ... and a partner with two: one replayed (it fails again and comes
  // back under a new sequence), one discarded through the dialog.
  await go('#/partners/' + DLQ_PARTNER + '/dead-letters', 'tr[data-seq]')
  const seqs = await page.$$eval('tr[data-seq]', (rs) => rs.map((r) => r.dataset.seq))
  if (seqs.length !== 2) fail('dead letters shown: ' + seqs)
  await audit('dead-letters')
  await page.click('tr[data-seq="' + seqs[0] + '"] button.quiet')
  await until('the replayed letter back under a new sequence', async () => {
    const items = (await api('GET', '/partners/' + DLQ_PARTNER + '/dead-letters')).data.items.map((l) => String(l.seq))
    return items.length === 2 && !items.includes(seqs[0])
  })
  await go('#/partners/' + DLQ_PARTNER + '/dead-letters', 'tr[data-seq="' + seqs[1] + '"]')
  await page.click('tr[data-seq="' + seqs[1] + '"] button.danger')
  await page.waitForSelector('dialog#confirm[open]')
  await page.click('#confirm-ok')
  await until('the discarded letter gone', async () => !(await api('GET', '/partners/' + DLQ_PARTNER + '/dead-letters')).data.items.some((l) => String(l.seq) === seqs[1]))
  await until('the page to drop it', async () => !(await page.$('tr[data-seq="' + seqs[1] + '"]')))

  // Partners: search by code, and delete one through the dialog.
  const gone = (await api('POST', '/partners', { code: 'gone-' + run, name: 'Gone' })).data
  await go('#/partners?code=' + encodeURIComponent('gone-' + run), 'tr[data-partner="gone-' + run + '"]')
  // Escape cancels the dialog (nothing deleted); the keyboard confirms it.
  await page.click('tr[data-partner="gone-' + run + '"] button.danger')
  await page.waitForSelector('dialog#confirm[open]')
  await page.keyboard.press('Escape')
  await until('the dialog closed', async () => !(await page.$('dialog#confirm[open]')))
  if ((await api('GET', '/partners/' + gone.id)).data.status !== 'Active') fail('cancelling the dialog deleted the partner')
  await page.click('tr[data-partner="gone-' + run + '"] button.danger')
  await page.waitForSelector('dialog#confirm[open]')
  await page.focus('#confirm-ok')
  await page.keyboard.press('Enter')
  await until('the partner deleted', async () => (await api('GET', '/partners/' + gone.id)).data?.status === 'Deleted' || (await api('GET', '/partners/' + gone.id)).status === 404)
  await go('#/partners', 'tr[data-partner="' + code + '"]')
  await audit('partners')

  // A report key signs in to its partner's reports only, read-only.
  const reportKey = (await api('POST', '/partners/' + partnerID + '/api-keys', { name: 'reader', scopes: ['report'] })).data.apiKey
  await page.click('#signout')
  await page.waitForSelector('#credential')
  if (await page.evaluate(() => sessionStorage.getItem('vt.credential'))) fail('signing out left the credential')
  // The sign-in page is drawn once: a second drawing (the router on the
  // hash's change) replaced the form under the typing, and dropped the
  // note (make test once failed on that: half a key typed, 401).
  await page.$eval('#credential', (el) => { el.dataset.first = '1' })
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))))
  if (!(await page.$eval('#credential', (el) => el.dataset.first === '1'))) fail('the sign-in page was drawn again after signing out')
  if (!/Signed out/.test(await text('#main'))) fail('signing out does not say so: ' + (await text('#main')))
  const before = requests.length
  await page.type('#credential', reportKey)
  await page.click('form.signin button[type=submit]')
  try {
    await page.waitForSelector('#report', { timeout: 15000 })
  } catch (e) {
    // Once seen under make test's load (a 401): say what the page and the
    // API said, so the next failure can be read.
    const s = await api('GET', '/session', undefined, reportKey)
    throw new Error('a report key could not sign in: the page says ' + JSON.stringify(await text('#main')) +
      '; GET /session with it now answers ' + s.status + ' ' + JSON.stringify(s.error || s.data) + ' (' + e.message + ')')
  }
  const navText = await text('#nav')
  if (/Partners/.test(navText) || !/Reports/.test(navText)) fail('a report key sees the nav: ' + navText)
  const rq = await page.$eval('#report', (el) => el.dataset.query)
  const readerRep = (await api('GET', '/reports/partners/' + partnerID + '?' + rq, undefined, reportKey)).data
  const shown = Number(await page.$eval('#report', (el) => el.dataset.total))
  if (shown !== readerRep.totalEvents || shown < 6) fail('a report key sees ' + shown + ' events, the API says ' + readerRep.totalEvents + ' (want the 5 sent and the rotated key\'s 1)')
  if (await page.$('form[aria-labelledby=new-key], form[aria-labelledby=new-partner]')) fail('a report key sees admin forms')
  await audit('report-key')
  // A tail that cannot work (a filter that is no sub-system id) stops and
  // says why, rather than retrying for ever.
  expected++ // chromium logs the 400
  await go('#/partners/' + partnerID + '/tail?subSystemId=nope', '#tail-status')
  await until('the bad tail to stop', async () => /Stopped: .*invalid_parameter/.test(await text('#tail-status')))
  await go('#/partners', '#report') // an admin page sends it back to its reports
  if (requests.slice(before).some((r) => /\/api\/v1\/(partners|sub-systems)/.test(new URL(r.split(' ')[1]).pathname))) fail('a report key\'s console called admin routes: ' + requests.slice(before).join(', '))
} catch (e) {
  fail('driver: ' + (e.stack || e))
} finally {
  await browser.close()
}
console.log(JSON.stringify({ failures, logs, pages, requests: requests.filter((r) => !r.includes('/console/')).length }))
