// The admin console: a single page over the edge's own API. No build
// step, no outside host, no inline script: everything is built with DOM
// calls (never innerHTML), so no value from the API is ever read as markup.
// The credential stays in sessionStorage and travels only in a header.

const API = '/api/v1'
const store = window.sessionStorage
const main = document.getElementById('main')
const nav = document.getElementById('nav')
const who = document.getElementById('who')
const signoutButton = document.getElementById('signout')
const toastBox = document.getElementById('toast')
let session = null // {role, partnerId}
let stopTail = null // ends the open live tail, if any
let navSeq = 0 // each navigation's number: a page whose navigation was overtaken stops rendering

// goTo navigates to hash, rendering it even when it is the current one.
function goTo (hash) {
  if (location.hash === hash) route()
  else location.hash = hash
}

// h makes an element: h('a', {href: '#/'}, 'text', child…).
function h (tag, attrs, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
    else if (k === 'text') el.textContent = v
    else el.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : String(c))
  }
  return el
}

const svgNS = 'http://www.w3.org/2000/svg'
function s (tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag)
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v)
  for (const c of children) el.append(c instanceof Node ? c : String(c))
  return el
}

// ApiError carries the API's error: its code, message and field errors.
class ApiError extends Error {
  constructor (status, err) {
    super((err && err.message) || ('HTTP ' + status))
    this.status = status
    this.code = (err && err.code) || ''
    this.fields = (err && err.fields) || []
  }
}

function credentialHeaders (cred) {
  cred = cred || store.getItem('vt.credential') || ''
  return cred.startsWith('vtk_') ? { 'X-Api-Key': cred } : { Authorization: 'Bearer ' + cred }
}

// api calls the API and returns the envelope's data, or throws ApiError.
async function api (method, path, body) {
  const headers = credentialHeaders()
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let res
  try {
    res = await fetch(API + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  } catch (e) {
    throw new ApiError(0, { code: 'network', message: 'The edge did not answer: ' + e.message })
  }
  let env = null
  try { env = await res.json() } catch (e) { /* not JSON */ }
  if (!res.ok || !env || !env.success) {
    if (res.status === 401 && session) signOut('Your session ended: ' + ((env && env.error && env.error.message) || 'sign in again'))
    throw new ApiError(res.status, env && env.error)
  }
  return { data: env.data, message: env.message }
}

function toast (text, kind) {
  const p = h('p', { class: kind || '' }, text)
  toastBox.append(p)
  while (toastBox.children.length > 3) toastBox.firstChild.remove()
  setTimeout(() => p.remove(), kind === 'error' ? 9000 : 4000)
}

// showError puts an API error into a form: its message on top, each field's
// next to its input (named by the input's name).
function showError (form, err) {
  for (const el of form.querySelectorAll('.field-error, .form-error')) el.remove()
  for (const el of form.querySelectorAll('[aria-invalid]')) { el.removeAttribute('aria-invalid'); el.removeAttribute('aria-describedby') }
  const top = h('p', { class: 'form-error', role: 'alert' }, err.message + (err.code ? ' (' + err.code + ')' : ''))
  form.prepend(top)
  for (const f of err.fields || []) {
    const input = form.querySelector('[name="' + CSS.escape(f.field) + '"]')
    if (!input) continue
    const id = 'err-' + Math.random().toString(36).slice(2)
    input.setAttribute('aria-invalid', 'true')
    input.setAttribute('aria-describedby', id)
    input.closest('label').append(h('span', { class: 'field-error', id }, f.message))
  }
  toast(err.message, 'error')
}

// submitting runs fn on submit with the button disabled, showing errors in the form.
function submitting (form, fn) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const button = form.querySelector('button[type=submit]')
    if (button) button.disabled = true
    try {
      await fn(new FormData(form))
      for (const el of form.querySelectorAll('.field-error, .form-error')) el.remove()
    } catch (err) {
      if (err instanceof ApiError) showError(form, err)
      else { showError(form, new ApiError(0, { message: String(err) })) }
    } finally {
      if (button) button.disabled = false
    }
  })
  return form
}

const confirmDialog = document.getElementById('confirm')
function confirmAction (title, text, okLabel) {
  document.getElementById('confirm-title').textContent = title
  document.getElementById('confirm-text').textContent = text
  document.getElementById('confirm-ok').textContent = okLabel || 'Confirm'
  confirmDialog.returnValue = ''
  confirmDialog.showModal()
  return new Promise((resolve) => confirmDialog.addEventListener('close', () => resolve(confirmDialog.returnValue === 'ok'), { once: true }))
}

function field (label, attrs) {
  return h('label', {}, label, h('input', attrs))
}
function checkbox (label, attrs) {
  return h('label', { class: 'check' }, h('input', Object.assign({ type: 'checkbox' }, attrs)), label)
}
function select (label, name, options, value) {
  return h('label', {}, label, h('select', { name },
    options.map(([v, t]) => h('option', { value: v, selected: v === value }, t))))
}
function when (t) {
  if (!t) return '—'
  const d = new Date(t)
  return isNaN(d) ? t : d.toLocaleString()
}
function badge (status) { return h('span', { class: 'badge ' + status }, status) }
function table (caption, heads, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: '0' },
    h('table', {}, h('caption', {}, caption),
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col', class: t.endsWith('#') ? 'num' : '' }, t.replace(/#$/, ''))))),
      h('tbody', {}, rows)))
}
function page (title, ...children) {
  document.title = title + ' · Volcanion Tracking'
  main.replaceChildren(h('h1', {}, title), ...children)
}
function fail (err) {
  main.append(h('p', { class: 'form-error', role: 'alert' }, err.message))
  toast(err.message, 'error')
}

// ---- sign in ------------------------------------------------------------

function signInPage (note) {
  nav.replaceChildren()
  who.textContent = ''
  signoutButton.hidden = true
  document.title = 'Sign in · Volcanion Tracking'
  const form = h('form', { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    note ? h('p', { class: 'muted' }, note) : null,
    h('p', { class: 'muted' }, 'With the admin token, or with a partner key that has the report scope (read-only reports of that partner).'),
    field('Admin token or report key', { name: 'credential', type: 'password', autocomplete: 'off', required: true, id: 'credential' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Sign in')))
  main.replaceChildren(submitting(form, async (fd) => {
    const cred = String(fd.get('credential')).trim()
    const res = await fetch(API + '/session', { headers: credentialHeaders(cred) })
    const env = await res.json().catch(() => null)
    if (!res.ok || !env || !env.success) throw new ApiError(res.status, env && env.error)
    store.setItem('vt.credential', cred)
    session = env.data
    toast('Signed in as ' + (session.role === 'admin' ? 'admin' : 'a report key'))
    goTo(home())
  }))
  document.getElementById('credential').focus()
}

function signOut (note) {
  if (stopTail) stopTail()
  store.removeItem('vt.credential')
  session = null
  navSeq++ // a navigation in flight draws nothing now
  // Not location.hash: its hashchange would route to the sign-in page once
  // more, redrawing it without its note under whoever is already typing.
  history.replaceState(null, '', '#/')
  signInPage(note)
}
signoutButton.addEventListener('click', () => signOut('Signed out.'))

function home () {
  return session.role === 'admin' ? '#/partners' : '#/partners/' + session.partnerId + '/reports'
}

function drawNav (current) {
  signoutButton.hidden = false
  who.textContent = session.role === 'admin' ? 'Admin' : 'Reports of one partner (read-only)'
  const links = session.role === 'admin'
    ? [['#/partners', 'Partners']]
    : [['#/partners/' + session.partnerId + '/reports', 'Reports'], ['#/partners/' + session.partnerId + '/tail', 'Live tail']]
  nav.replaceChildren(...links.map(([href, text]) => h('a', { href, 'aria-current': current.startsWith(href) ? 'page' : null }, text)))
}

// ---- router ---------------------------------------------------------------

async function route () {
  const mine = ++navSeq
  if (stopTail) stopTail()
  if (!store.getItem('vt.credential')) return signInPage()
  if (!session) {
    try { session = (await api('GET', '/session')).data } catch (e) { return signInPage(e.message) }
    if (mine !== navSeq) return
  }
  const [path, query] = (location.hash.slice(1) || home().slice(1)).split('?')
  const params = new URLSearchParams(query || '')
  const parts = path.split('/').filter(Boolean)
  drawNav('#' + path)
  main.replaceChildren(h('p', {}, 'Loading…'))
  try {
    if (session.role !== 'admin') {
      if (parts[0] !== 'partners' || parts[1] !== session.partnerId || !['reports', 'tail'].includes(parts[2])) {
        location.hash = home()
        return
      }
    }
    if (parts[0] === 'partners' && parts.length === 1) return await partnersPage(params, mine)
    if (parts[0] === 'partners' && parts[1]) return await partnerPage(parts[1], parts[2] || 'overview', params, mine)
    location.hash = home()
  } catch (e) {
    fail(e)
  }
}
// The skip link moves focus to the content without touching the hash: the
// hash is the router's, and "#main" would send the user back home.
document.querySelector('a.skip').addEventListener('click', (e) => {
  e.preventDefault()
  main.focus()
})

// After a navigation, focus moves to the new content, as a page load would
// put a screen reader there.
window.addEventListener('hashchange', async () => {
  await route()
  if (!main.contains(document.activeElement)) main.focus({ preventScroll: true })
})

// ---- partners -------------------------------------------------------------

async function partnersPage (params, mine) {
  const pageNo = Math.max(1, parseInt(params.get('page') || '1', 10) || 1)
  const code = params.get('code') || ''
  let list
  if (code) {
    try {
      list = { data: [(await api('GET', '/partners/by-code/' + encodeURIComponent(code))).data], page: 1, totalPages: 1, totalCount: 1 }
    } catch (e) {
      if (e.status !== 404) throw e
      list = { data: [], page: 1, totalPages: 1, totalCount: 0 }
    }
  } else {
    list = (await api('GET', '/partners?pageSize=20&page=' + pageNo)).data
  }
  if (mine !== navSeq) return
  const search = h('form', { class: 'grid', role: 'search', 'aria-label': 'Find a partner' },
    field('Find by code', { name: 'code', value: code, type: 'search' }),
    h('button', { type: 'submit', class: 'quiet' }, 'Find'),
    code ? h('a', { href: '#/partners' }, 'Show all') : null)
  search.addEventListener('submit', (e) => {
    e.preventDefault()
    const c = new FormData(search).get('code').trim()
    location.hash = c ? '#/partners?code=' + encodeURIComponent(c) : '#/partners'
  })
  const create = submitting(h('form', { class: 'grid', 'aria-labelledby': 'new-partner' },
    field('Code', { name: 'code', required: true, autocomplete: 'off' }),
    field('Name', { name: 'name', required: true, autocomplete: 'off' }),
    field('Retention (days, optional)', { name: 'retentionDays', type: 'number', min: 1, inputmode: 'numeric' }),
    field('Rate limit (events/s, optional)', { name: 'rateLimit', type: 'number', min: 0, inputmode: 'numeric' }),
    checkbox('Require signed requests', { name: 'requireSignature' }),
    h('button', { type: 'submit' }, 'Create partner')), async (fd) => {
    const body = { code: fd.get('code').trim(), name: fd.get('name').trim() }
    if (fd.get('retentionDays')) body.retentionDays = Number(fd.get('retentionDays'))
    if (fd.get('rateLimit')) body.rateLimit = Number(fd.get('rateLimit'))
    if (fd.get('requireSignature')) body.requireSignature = true
    const res = await api('POST', '/partners', body)
    toast(res.message || 'Partner created')
    location.hash = '#/partners/' + res.data.id + '/sub-systems'
  })
  const rows = list.data.map((p) => h('tr', { 'data-partner': p.code },
    h('td', {}, h('a', { href: '#/partners/' + p.id }, p.code)),
    h('td', {}, p.name),
    h('td', {}, badge(p.status)),
    h('td', {}, when(p.createdAt)),
    h('td', {}, h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'quiet', onclick: () => togglePartner(p) }, p.status === 'Active' ? 'Disable' : 'Enable', h('span', { class: 'sr' }, ' ' + p.code)),
      h('button', { type: 'button', class: 'danger', onclick: () => deletePartner(p) }, 'Delete', h('span', { class: 'sr' }, ' ' + p.code))))))
  const pager = list.totalPages > 1
    ? h('nav', { class: 'pager', 'aria-label': 'Pages' },
      pageNo > 1 ? h('a', { href: '#/partners?page=' + (pageNo - 1) }, 'Previous') : null,
      h('span', {}, 'Page ' + list.page + ' of ' + list.totalPages + ' (' + list.totalCount + ' partners)'),
      pageNo < list.totalPages ? h('a', { href: '#/partners?page=' + (pageNo + 1) }, 'Next') : null)
    : h('p', { class: 'muted' }, list.totalCount + ' partner' + (list.totalCount === 1 ? '' : 's'))
  page('Partners', search,
    table('Partners', ['Code', 'Name', 'Status', 'Created', 'Actions'], rows, code ? 'No partner has the code ' + code + '.' : 'No partners yet: create the first below.'),
    pager,
    h('h2', { id: 'new-partner' }, 'New partner'), create)
}

async function togglePartner (p) {
  try {
    const res = await api('PATCH', '/partners/' + p.id + '/toggle-status')
    toast(p.code + ' is now ' + res.data.status)
    route()
  } catch (e) { toast(e.message, 'error') }
}

async function deletePartner (p) {
  if (!await confirmAction('Delete partner ' + p.code + '?', 'Its keys are revoked at once and its sub-systems disabled. Its stored events stay until their retention ends.', 'Delete partner')) return
  try {
    const res = await api('DELETE', '/partners/' + p.id)
    toast(res.message || 'Partner deleted')
    goTo('#/partners')
  } catch (e) { toast(e.message, 'error') }
}

// ---- one partner ----------------------------------------------------------

const tabs = [['overview', 'Overview'], ['sub-systems', 'Sub-systems'], ['keys', 'API keys'], ['reports', 'Reports'], ['tail', 'Live tail'], ['dead-letters', 'Dead letters']]

async function partnerPage (id, tab, params, mine) {
  const admin = session.role === 'admin'
  let partner = { id, code: '', name: 'Partner' }
  let subs = []
  if (admin) {
    partner = (await api('GET', '/partners/' + id)).data
    subs = (await api('GET', '/partners/' + id + '/sub-systems')).data || []
  }
  if (mine !== navSeq) return
  const shown = tabs.filter(([t]) => admin || t === 'reports' || t === 'tail')
  const tabNav = h('nav', { class: 'tabs', 'aria-label': 'Partner' },
    shown.map(([t, label]) => h('a', { href: '#/partners/' + id + '/' + t, 'aria-current': t === tab ? 'page' : null }, label)))
  const title = admin ? partner.name + ' (' + partner.code + ')' : 'Your reports'
  page(title, admin ? h('p', {}, badge(partner.status), ' ', h('span', { class: 'muted' }, 'id ' + partner.id)) : null, tabNav)
  const body = h('section', { 'aria-label': (shown.find(([t]) => t === tab) || [0, ''])[1] })
  main.append(body)
  const views = { overview: overviewTab, 'sub-systems': subSystemsTab, keys: keysTab, reports: reportsTab, tail: tailTab, 'dead-letters': deadLettersTab }
  await (views[tab] || overviewTab)(body, partner, subs, params, mine)
}

function overviewTab (body, p) {
  const form = submitting(h('form', { class: 'grid', 'aria-label': 'Edit partner' },
    field('Name', { name: 'name', value: p.name, required: true }),
    field('Retention (days)', { name: 'retentionDays', type: 'number', min: 1, value: p.retentionDays || '' }),
    field('Rate limit (events/s, 0: the default)', { name: 'rateLimit', type: 'number', min: 0, value: p.rateLimit || 0 }),
    checkbox('Require signed requests', { name: 'requireSignature', checked: !!p.requireSignature }),
    h('button', { type: 'submit' }, 'Save')), async (fd) => {
    const b = { name: fd.get('name').trim(), rateLimit: Number(fd.get('rateLimit') || 0), requireSignature: !!fd.get('requireSignature') }
    if (fd.get('retentionDays')) b.retentionDays = Number(fd.get('retentionDays'))
    const res = await api('PUT', '/partners/' + p.id, b)
    toast(res.message || 'Saved')
    route()
  })
  body.append(h('h2', {}, 'Settings'), form,
    h('dl', {}, h('dt', {}, 'Created'), h('dd', {}, when(p.createdAt)), h('dt', {}, 'Updated'), h('dd', {}, when(p.updatedAt))),
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'quiet', onclick: () => togglePartner(p) }, p.status === 'Active' ? 'Disable partner' : 'Enable partner'),
      h('button', { type: 'button', class: 'danger', onclick: () => deletePartner(p) }, 'Delete partner')))
}

function subSystemsTab (body, p, subs) {
  const create = submitting(h('form', { class: 'grid', 'aria-labelledby': 'new-sub' },
    field('Code', { name: 'code', required: true, autocomplete: 'off' }),
    field('Name', { name: 'name', required: true, autocomplete: 'off' }),
    h('button', { type: 'submit' }, 'Create sub-system')), async (fd) => {
    const res = await api('POST', '/partners/' + p.id + '/sub-systems', { code: fd.get('code').trim(), name: fd.get('name').trim() })
    toast(res.message || 'Sub-system created')
    route()
  })
  const rows = subs.map((ss) => {
    const edit = submitting(h('form', { class: 'grid', 'aria-label': 'Rename ' + ss.code },
      field('Name of ' + ss.code, { name: 'name', value: ss.name, required: true }),
      h('button', { type: 'submit', class: 'quiet' }, 'Rename')), async (fd) => {
      const res = await api('PUT', '/partners/' + p.id + '/sub-systems/' + ss.id, { name: fd.get('name').trim() })
      toast(res.message || 'Saved')
      route()
    })
    return h('tr', { 'data-sub': ss.code },
      h('td', {}, h('code', {}, ss.code)), h('td', {}, edit), h('td', {}, badge(ss.status)), h('td', {}, h('code', {}, ss.id)),
      h('td', {}, h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'quiet', onclick: () => act('PATCH', '/partners/' + p.id + '/sub-systems/' + ss.id + '/toggle-status') }, ss.status === 'Active' ? 'Disable' : 'Enable', h('span', { class: 'sr' }, ' ' + ss.code)),
        h('button', {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            if (await confirmAction('Delete sub-system ' + ss.code + '?', 'Events sent to it are refused from then on.', 'Delete sub-system')) act('DELETE', '/partners/' + p.id + '/sub-systems/' + ss.id)
          }
        }, 'Delete', h('span', { class: 'sr' }, ' ' + ss.code)))))
  })
  body.append(table('Sub-systems', ['Code', 'Name', 'Status', 'Id', 'Actions'], rows, 'No sub-systems yet: events need one.'),
    h('h2', { id: 'new-sub' }, 'New sub-system'), create)
}

async function act (method, path) {
  try {
    const res = await api(method, path)
    toast(res.message || 'Done')
    route()
  } catch (e) { toast(e.message, 'error') }
}

// secretPanel shows a new key once, with copy buttons.
function secretPanel (created) {
  const copy = (label, value) => h('div', {},
    h('span', {}, label),
    h('output', { 'data-secret': label }, value),
    h('button', {
      type: 'button',
      class: 'quiet',
      onclick: async (e) => {
        try { await navigator.clipboard.writeText(value); e.target.textContent = 'Copied' } catch (err) { toast('Copy failed: select the text and copy it', 'error') }
      }
    }, 'Copy ' + label))
  return h('section', { class: 'secret', role: 'alert', 'aria-labelledby': 'secret-title' },
    h('h2', { id: 'secret-title' }, 'Save this key now'),
    h('p', {}, 'It is shown this once: the system keeps only a hash. Anyone holding it can send events as ' + created.name + '.'),
    copy('API key', created.apiKey),
    created.signingSecret ? copy('Signing secret', created.signingSecret) : null)
}

async function keysTab (body, p, subs) {
  const keys = (await api('GET', '/partners/' + p.id + '/api-keys')).data || []
  const subName = (id) => { const ss = subs.find((x) => x.id === id); return ss ? ss.code : id }
  const create = submitting(h('form', { class: 'grid', 'aria-labelledby': 'new-key' },
    field('Name', { name: 'name', required: true, autocomplete: 'off' }),
    h('fieldset', {}, h('legend', {}, 'Scopes'), checkbox('ingest', { name: 'scope', value: 'ingest', checked: true }), checkbox('report', { name: 'scope', value: 'report' })),
    select('Bound to', 'subSystemId', [['', 'any sub-system']].concat(subs.map((ss) => [ss.id, ss.code])), ''),
    field('Expires (optional)', { name: 'expiredAt', type: 'datetime-local' }),
    field('Rate limit (events/s, optional)', { name: 'rateLimit', type: 'number', min: 0 }),
    checkbox('Require signed requests', { name: 'requireSignature' }),
    h('button', { type: 'submit' }, 'Create key')), async (fd) => {
    const b = { name: fd.get('name').trim(), scopes: fd.getAll('scope') }
    if (fd.get('subSystemId')) b.subSystemId = fd.get('subSystemId')
    if (fd.get('expiredAt')) b.expiredAt = new Date(fd.get('expiredAt')).toISOString()
    if (fd.get('rateLimit')) b.rateLimit = Number(fd.get('rateLimit'))
    if (fd.get('requireSignature')) b.requireSignature = true
    const res = await api('POST', '/partners/' + p.id + '/api-keys', b)
    await keysTabAgain(body, p, subs, res.data)
  })
  const rows = keys.map((k) => {
    const rotate = submitting(h('form', { class: 'grid', 'aria-label': 'Rotate ' + k.name },
      select('Old key stays valid for', 'grace', [['0', 'no time (revoke now)'], ['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days']], '0'),
      h('button', { type: 'submit', class: 'quiet' }, 'Rotate', h('span', { class: 'sr' }, ' ' + k.name))), async (fd) => {
      const res = await api('POST', '/partners/' + p.id + '/api-keys/' + k.id + '/regenerate', { graceSeconds: Number(fd.get('grace')) })
      toast(res.message || 'Key rotated')
      await keysTabAgain(body, p, subs, res.data)
    })
    return h('tr', { 'data-key': k.name, 'data-status': k.status },
      h('td', {}, k.name), h('td', {}, h('code', {}, k.prefix)), h('td', {}, (k.scopes || []).join(', ')),
      h('td', {}, k.subSystemId ? subName(k.subSystemId) : 'any'), h('td', {}, badge(k.status)),
      h('td', {}, when(k.expiredAt)), h('td', {}, when(k.lastUsedAt)),
      h('td', {}, k.status === 'Active'
        ? h('div', { class: 'actions' }, rotate,
          h('button', {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              if (await confirmAction('Revoke key ' + k.name + '?', 'Every edge refuses it within a second. This cannot be undone.', 'Revoke key')) act('DELETE', '/partners/' + p.id + '/api-keys/' + k.id)
            }
          }, 'Revoke', h('span', { class: 'sr' }, ' ' + k.name)))
        : '—'))
  })
  body.append(table('API keys', ['Name', 'Prefix', 'Scopes', 'Bound to', 'Status', 'Expires', 'Last used', 'Actions'], rows, 'No keys yet.'),
    h('h2', { id: 'new-key' }, 'New key'), create)
}

async function keysTabAgain (body, p, subs, created) {
  body.replaceChildren()
  await keysTab(body, p, subs)
  body.prepend(secretPanel(created))
  body.querySelector('.secret').scrollIntoView()
}

// ---- reports --------------------------------------------------------------

// wall is the wall-clock time "YYYY-MM-DDTHH:MM" of instant t in zone tz.
function wall (t, tz) {
  const f = new Intl.DateTimeFormat('en-CA', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
  const p = Object.fromEntries(f.formatToParts(t).map((x) => [x.type, x.value]))
  return p.year + '-' + p.month + '-' + p.day + 'T' + p.hour + ':' + p.minute
}
function asUTC (v) {
  const [d, hm] = v.split('T')
  const [y, mo, da] = d.split('-').map(Number)
  const [h, mi] = (hm || '00:00').split(':').map(Number)
  return Date.UTC(y, mo - 1, da, h, mi)
}
// zoned is the instant whose wall-clock time in zone tz is v (a
// datetime-local value): the range a person types is in the report's zone,
// not the browser's. As JavaScript's Temporal does by default, a time that
// occurs twice (clocks set back) is the earlier one, and a time that does
// not occur (clocks set forward) is read with the offset before the change.
function zoned (v, tz) {
  const want = asUTC(v)
  const offsetAt = (t) => asUTC(wall(new Date(t), tz)) - Math.floor(t / 60000) * 60000
  const before = offsetAt(want - 86400e3)
  const after = offsetAt(want + 86400e3)
  const fits = [want - before, want - after].filter((t) => wall(new Date(t), tz) === v)
  return new Date(fits.length ? Math.min(...fits) : want - before)
}

async function reportsTab (body, p, subs, params) {
  const tz = params.get('tz') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'
  const now = new Date()
  let known = true
  try { wall(now, tz) } catch (e) { known = false }
  const zone = known ? tz : 'UTC'
  const from = params.get('from') || wall(new Date(now.getTime() - 24 * 3600e3), zone)
  const to = params.get('to') || wall(new Date(now.getTime() + 60e3), zone)
  const granularity = params.get('granularity') || 'hour'
  const form = h('form', { class: 'grid', 'aria-label': 'Report settings' },
    field('From (in the time zone)', { name: 'from', type: 'datetime-local', value: from, required: true }),
    field('To (in the time zone)', { name: 'to', type: 'datetime-local', value: to, required: true }),
    select('Granularity', 'granularity', [['minute', 'minute'], ['hour', 'hour'], ['day', 'day'], ['week', 'week'], ['month', 'month']], granularity),
    field('Time zone', { name: 'tz', value: tz, required: true }),
    field('Event type (optional)', { name: 'eventType', value: params.get('eventType') || '' }),
    session.role === 'admin'
      ? select('Sub-system', 'subSystemId', [['', 'all']].concat(subs.map((ss) => [ss.id, ss.code])), params.get('subSystemId') || '')
      : field('Sub-system id (optional)', { name: 'subSystemId', value: params.get('subSystemId') || '' }),
    field('Top entries', { name: 'top', type: 'number', min: 1, max: 100, value: params.get('top') || 10 }),
    h('button', { type: 'submit' }, 'Show report'))
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const q = new URLSearchParams()
    for (const [k, v] of new FormData(form)) if (v !== '') q.set(k, v)
    location.hash = '#/partners/' + p.id + '/reports?' + q
  })
  body.append(form)
  if (!known) {
    showError(form, new ApiError(400, { code: 'invalid_parameter', message: 'tz: ' + tz + ' is not a time zone this browser knows (an IANA name, e.g. Asia/Ho_Chi_Minh)', fields: [{ field: 'tz', message: 'not a known time zone' }] }))
    return
  }
  const q = new URLSearchParams({ from: zoned(from, tz).toISOString(), to: zoned(to, tz).toISOString(), granularity, tz, top: params.get('top') || '10' })
  if (params.get('eventType')) q.set('eventType', params.get('eventType'))
  if (params.get('subSystemId')) q.set('subSystemId', params.get('subSystemId'))
  let rep
  try {
    rep = (await api('GET', '/reports/partners/' + p.id + '?' + q)).data
  } catch (e) {
    showError(form, e)
    return
  }
  const out = h('section', { id: 'report', 'aria-live': 'polite', 'data-total': rep.totalEvents, 'data-query': q.toString() })
  out.append(h('div', { class: 'cards' },
    h('div', { class: 'card' }, h('div', { class: 'value', id: 'total' }, rep.totalEvents.toLocaleString()), h('div', { class: 'label' }, 'events')),
    rep.uniqueUsers !== undefined && rep.uniqueUsers !== null
      ? h('div', { class: 'card' }, h('div', { class: 'value', id: 'users' }, rep.uniqueUsers.toLocaleString()), h('div', { class: 'label' }, 'unique users'))
      : null,
    h('div', { class: 'card' }, h('div', { class: 'value' }, rep.granularity), h('div', { class: 'label' }, 'buckets in ' + rep.tz))))
  out.append(h('h2', {}, 'Events over time'), chart(rep.timeSeries, rep.granularity, rep.tz))
  out.append(h('details', {}, h('summary', {}, 'Show as a table'),
    table('Events per ' + rep.granularity, ['Bucket', 'Events#', 'Unique users#'], rep.timeSeries.map((pt) =>
      h('tr', { 'data-bucket': pt.timestamp, 'data-count': pt.count }, h('td', {}, fmtBucket(pt.timestamp, rep.granularity, rep.tz)),
        h('td', { class: 'num' }, pt.count), h('td', { class: 'num' }, pt.uniqueUsers === undefined ? '—' : pt.uniqueUsers))), 'No buckets.')))
  const bars = (id, title, items) => {
    const max = Math.max(1, ...items.map((i) => i.count))
    return [h('h2', { id }, title), items.length === 0
      ? h('p', { class: 'muted' }, 'None in this range.')
      : h('ol', { class: 'bars', 'aria-labelledby': id }, items.map((i) => h('li', { 'data-name': i.name, 'data-count': i.count },
        h('span', {}, i.name), h('meter', { min: 0, max, value: i.count, 'aria-label': i.name + ': ' + i.count }), h('span', { class: 'num' }, i.count))))]
  }
  out.append(...bars('top-types', 'Top event types', (rep.topEventTypes || []).map((t) => ({ name: t.eventType, count: t.eventCount }))))
  out.append(...bars('top-subs', 'Top sub-systems', (rep.topSubSystems || []).map((t) => ({ name: t.subSystemCode || t.subSystemId, count: t.eventCount }))))
  if (rep.dataCompleteUntil) out.append(h('p', { class: 'muted' }, 'Complete until ' + when(rep.dataCompleteUntil) + '; later events may still be on their way.'))
  body.append(out)
}

function fmtBucket (t, granularity, tz) {
  const opts = { timeZone: tz }
  if (granularity === 'minute' || granularity === 'hour') Object.assign(opts, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
  else Object.assign(opts, { year: 'numeric', month: 'short', day: 'numeric' })
  try { return new Intl.DateTimeFormat(undefined, opts).format(new Date(t)) } catch (e) { return t }
}

// chart draws the series as bars, with each bucket's count as its title.
function chart (series, granularity, tz) {
  const W = 800; const H = 220; const pad = 28
  const max = Math.max(1, ...series.map((p) => p.count))
  const bw = (W - 2 * pad) / Math.max(1, series.length)
  const total = series.reduce((a, p) => a + p.count, 0)
  const svg = s('svg', { viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-labelledby': 'chart-title' },
    s('title', { id: 'chart-title' }, total + ' events in ' + series.length + ' buckets of one ' + granularity + ', at most ' + max + ' in one'))
  svg.append(s('line', { class: 'axis', x1: pad, y1: H - pad, x2: W - pad, y2: H - pad }))
  svg.append(s('text', { x: 2, y: pad - 6 }, String(max)))
  series.forEach((p, i) => {
    const bh = p.count / max * (H - 2 * pad)
    svg.append(s('rect', { class: 'bar', x: pad + i * bw + bw * 0.1, y: H - pad - bh, width: Math.max(1, bw * 0.8), height: bh, 'data-count': p.count, 'data-bucket': p.timestamp },
      s('title', {}, fmtBucket(p.timestamp, granularity, tz) + ': ' + p.count)))
  })
  if (series.length) {
    svg.append(s('text', { x: pad, y: H - 8 }, fmtBucket(series[0].timestamp, granularity, tz)))
    svg.append(s('text', { x: W - pad, y: H - 8, 'text-anchor': 'end' }, fmtBucket(series[series.length - 1].timestamp, granularity, tz)))
  }
  return h('figure', { class: 'chart' }, svg)
}

// ---- live tail ------------------------------------------------------------

function tailTab (body, p, subs, params, mine) {
  const sub = params.get('subSystemId') || ''
  const status = h('p', { id: 'tail-status', role: 'status' }, 'Stopped.')
  const omitted = h('span', { id: 'tail-omitted' }, '0')
  const rows = h('tbody', { id: 'tail-rows' })
  const button = h('button', { type: 'button', id: 'tail-toggle' }, 'Start')
  const filter = session.role === 'admin'
    ? select('Sub-system', 'subSystemId', [['', 'all']].concat(subs.map((ss) => [ss.id, ss.code])), sub)
    : field('Sub-system id (optional)', { name: 'subSystemId', value: sub })
  const form = h('form', { class: 'grid', 'aria-label': 'Live tail' }, filter, button)
  const subCode = (id) => { const ss = subs.find((x) => x.id === id); return ss ? ss.code : id }
  let running = false
  let wait = 1000 // before reconnecting; doubles to 30 s while the edge keeps failing
  const start = () => {
    const ctl = new AbortController()
    running = true
    button.textContent = 'Stop'
    status.textContent = 'Connecting…'
    stopTail = () => { ctl.abort(); running = false; stopTail = null; button.textContent = 'Start'; status.textContent = 'Stopped.' }
    const q = new FormData(form).get('subSystemId')
    follow('/reports/partners/' + p.id + '/tail' + (q ? '?subSystemId=' + encodeURIComponent(q) : ''), ctl.signal, {
      open: () => { wait = 1000; status.textContent = 'Watching: events appear here as they are stored.' },
      stored: (e) => {
        rows.prepend(h('tr', { 'data-id': e.id },
          h('td', {}, new Date(e.storedAt).toLocaleTimeString()), h('td', {}, e.eventType), h('td', {}, subCode(e.subSystemId)),
          h('td', {}, e.userId || e.anonymousId || '—'), h('td', {}, h('code', {}, e.id))))
        while (rows.children.length > 200) rows.lastChild.remove()
      },
      omitted: (o) => { omitted.textContent = String(Number(omitted.textContent) + o.omitted) },
      closing: () => { status.textContent = 'The edge closed the stream; reconnecting…' },
      refused: (e) => {
        // The credential is no longer valid: no retry.
        if (stopTail) stopTail()
        status.textContent = 'Stopped: ' + (e.message || 'this credential may no longer watch') + (e.code ? ' (' + e.code + ')' : '')
        if (e.code && e.code.startsWith('api_key') && session.role !== 'admin') signOut('Your key can no longer read reports: ' + e.message)
      },
      error: (err) => {
        if (!running) return
        const transient = !(err instanceof ApiError) || err.status === 0 || err.status >= 500 || err.status === 429
        if (!transient) {
          // A wrong filter, a revoked key, a gone partner: retrying cannot help.
          if (stopTail) stopTail()
          status.textContent = 'Stopped: ' + err.message + (err.code ? ' (' + err.code + ')' : '')
          toast(err.message, 'error')
          return
        }
        status.textContent = 'Disconnected: ' + err.message + '. Retrying in ' + Math.round(wait / 1000) + ' s…'
      }
    }).then(() => {
      if (!running) return
      const again = wait
      wait = Math.min(30000, wait * 2)
      setTimeout(() => { if (running && stopTail) { stopTail(); start() } }, again)
    })
  }
  form.addEventListener('submit', (e) => e.preventDefault())
  button.addEventListener('click', () => { if (running && stopTail) stopTail(); else start() })
  body.append(h('p', { class: 'muted' }, 'Events of this partner as the workers store them; past 50 a second the rest are counted, not shown.'),
    form, status, h('p', {}, 'Not shown (over the rate): ', omitted),
    h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Stored events', tabindex: '0' },
      h('table', {}, h('caption', {}, 'Latest stored events, newest first (at most 200)'),
        h('thead', {}, h('tr', {}, ['Stored', 'Type', 'Sub-system', 'User', 'Id'].map((t) => h('th', { scope: 'col' }, t)))), rows)))
  if (params.get('start') !== 'no' && mine === navSeq) start()
}

// follow reads a server-sent event stream with the credential in a header
// (EventSource cannot send one), until signal aborts or the stream ends.
async function follow (path, signal, on) {
  let res
  try {
    res = await fetch(API + path, { headers: credentialHeaders(), signal })
  } catch (e) {
    if (!signal.aborted) on.error(e)
    return
  }
  if (!res.ok) {
    const env = await res.json().catch(() => null)
    on.error(new ApiError(res.status, env && env.error))
    return
  }
  on.open()
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buf = ''
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) break
      buf += value
      let i
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i)
        buf = buf.slice(i + 2)
        let name = ''; let data = ''
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) name = line.slice(7)
          else if (line.startsWith('data: ')) data += line.slice(6)
        }
        if (name && on[name]) on[name](JSON.parse(data || '{}'))
      }
    }
  } catch (e) {
    if (!signal.aborted) on.error(e)
  }
}

// ---- dead letters ---------------------------------------------------------

async function deadLettersTab (body, p, subs, params) {
  const after = params.get('after') || ''
  const list = (await api('GET', '/partners/' + p.id + '/dead-letters?limit=50' + (after ? '&after=' + encodeURIComponent(after) : ''))).data
  const subCode = (id) => { const ss = subs.find((x) => x.id === id); return ss ? ss.code : (id || '—') }
  const rows = (list.items || []).map((l) => h('tr', { 'data-seq': l.seq },
    h('td', { class: 'num' }, l.seq), h('td', {}, when(l.deadAt)), h('td', {}, l.reason), h('td', {}, subCode(l.subSystemId)),
    h('td', {}, h('code', {}, JSON.stringify(l.event).slice(0, 120))),
    h('td', {}, h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'quiet', onclick: () => replay(p, [l.seq]) }, 'Replay', h('span', { class: 'sr' }, ' ' + l.seq)),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          if (await confirmAction('Discard dead letter ' + l.seq + '?', 'The event is dropped for good.', 'Discard')) act('DELETE', '/partners/' + p.id + '/dead-letters/' + l.seq)
        }
      }, 'Discard', h('span', { class: 'sr' }, ' ' + l.seq))))))
  body.append(h('p', { class: 'muted' }, 'Events the workers could not store, with the reason. Replay sends them through again.'),
    table('Dead letters', ['Seq#', 'Dead at', 'Reason', 'Sub-system', 'Event', 'Actions'], rows, 'No dead letters: every event was stored.'),
    h('div', { class: 'actions' },
      rows.length ? h('button', { type: 'button', onclick: () => replay(p, []) }, 'Replay all') : null,
      list.next ? h('a', { href: '#/partners/' + p.id + '/dead-letters?after=' + list.next }, 'Next page') : null))
}

async function replay (p, seqs) {
  try {
    const res = await api('POST', '/partners/' + p.id + '/dead-letters/replay', seqs.length ? { seqs } : undefined)
    toast((res.data.replayed || []).length + ' replayed' + (res.data.more ? '; more remain' : ''))
    route()
  } catch (e) { toast(e.message, 'error') }
}

route()
