// jobwerk dashboard: a single page, no build step. Every value from the server
// is put in the page as text (textContent, attributes), never parsed as HTML.
'use strict'
;(function () {
  const meta = (n) => document.querySelector(`meta[name="${n}"]`).getAttribute('content')
  const BASE = meta('jobwerk-base')
  const CSRF = meta('jobwerk-csrf')
  const READ_ONLY = meta('jobwerk-readonly') === 'true'
  const STATUSES = ['waiting', 'pending', 'running', 'completed', 'failed', 'timeout', 'cancelled']
  const main = document.getElementById('main')
  const SVG = 'http://www.w3.org/2000/svg'
  let renderSeq = 0

  // --- DOM helpers ----------------------------------------------------------

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag)
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue
        if (k.startsWith('on')) el.addEventListener(k.slice(2), v)
        else el.setAttribute(k, v === true ? '' : String(v))
      }
    }
    append(el, kids)
    return el
  }
  function append(el, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue
      el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)))
    }
  }
  function s(tag, attrs) {
    const el = document.createElementNS(SVG, tag)
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v))
    return el
  }
  function badge(status) {
    return h('span', { class: `badge s-${status}` }, status)
  }
  function toast(text) {
    const t = h('div', { class: 'toast', role: 'status' }, text)
    document.body.appendChild(t)
    setTimeout(() => t.remove(), 3000)
  }

  // --- time ----------------------------------------------------------------

  function ago(ms) {
    if (ms === null || ms === undefined) return ''
    const d = Date.now() - ms
    const a = Math.abs(d)
    const f = (n, u) => `${Math.round(n)} ${u}${Math.round(n) === 1 ? '' : 's'}`
    const t = a < 5000 ? 'just now' : a < 60000 ? f(a / 1000, 'sec') : a < 3600000 ? f(a / 60000, 'min') : a < 86400000 ? f(a / 3600000, 'hour') : f(a / 86400000, 'day')
    if (t === 'just now') return t
    return d >= 0 ? `${t} ago` : `in ${t}`
  }
  // A timestamp in the browser's zone, with the UTC value on hover and the relative time beside it.
  function when(ms, rel) {
    if (ms === null || ms === undefined) return h('span', { class: 'mut' }, '-')
    const d = new Date(ms)
    return h('time', { datetime: d.toISOString(), title: `${d.toISOString().replace('T', ' ').replace('Z', ' UTC')}` }, d.toLocaleString(), rel === false ? null : h('span', { class: 'mut small' }, ` (${ago(ms)})`))
  }
  function dur(ms) {
    if (ms === null || ms === undefined) return '-'
    return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`
  }

  // --- API ------------------------------------------------------------------

  async function get(path) {
    const res = await fetch(`${BASE}/api${path}`, { credentials: 'same-origin', headers: { accept: 'application/json' } })
    const body = await res.json().catch(() => ({}))
    if (!res.ok) throw new Error((body.error && body.error.message) || `HTTP ${res.status}`)
    return body
  }
  async function post(path, body) {
    const res = await fetch(`${BASE}/api${path}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': CSRF },
      body: JSON.stringify(body || {}),
    })
    const out = await res.json().catch(() => ({}))
    if (!res.ok) throw new Error((out.error && out.error.message) || `HTTP ${res.status}`)
    return out
  }
  function action(label, path, opts) {
    if (READ_ONLY) return null
    const o = opts || {}
    return h(
      'button',
      {
        type: 'button',
        class: o.cls || 'sec',
        'data-action': o.name || label.toLowerCase(),
        onclick: async (ev) => {
          const body = o.body ? o.body() : {}
          if (body === null) return
          ev.currentTarget.disabled = true
          try {
            await post(path, body)
            toast(`${label}: done`)
          } catch (e) {
            toast(`${label}: ${e.message}`)
          }
          render()
        },
      },
      label,
    )
  }

  // --- charts (hand-written SVG) ----------------------------------------------

  function chart(title, points, series) {
    const W = 600
    const H = 120
    const pad = 4
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title })
    const n = points.length
    let max = 1
    for (const p of points) for (const [k] of series) max = Math.max(max, Number(p[k]) || 0)
    for (let i = 1; i < 4; i++) svg.appendChild(s('line', { x1: 0, x2: W, y1: (H / 4) * i, y2: (H / 4) * i, stroke: '#eef1f5' }))
    for (const [k, , color] of series) {
      if (n === 0) break
      const xy = points.map((p, i) => {
        const x = n === 1 ? W / 2 : (i / (n - 1)) * W
        const y = H - pad - ((Number(p[k]) || 0) / max) * (H - 2 * pad)
        return `${x.toFixed(1)},${y.toFixed(1)}`
      })
      // One point is a short level line (a polyline of one point draws nothing).
      const pts = n === 1 ? [`0,${xy[0].split(',')[1]}`, `${W},${xy[0].split(',')[1]}`] : xy
      svg.appendChild(s('polyline', { points: pts.join(' '), fill: 'none', stroke: color, 'stroke-width': 2, 'vector-effect': 'non-scaling-stroke' }))
    }
    const last = n > 0 ? points[n - 1] : null
    return h(
      'div',
      { class: 'card chart' },
      h('h3', null, title, h('span', { class: 'mut small' }, `max ${+max.toFixed(2)}`)),
      n === 0 ? h('p', { class: 'mut' }, 'No data yet') : svg,
      h(
        'div',
        { class: 'legend' },
        series.map(([k, label, color]) => {
          const el = h('span', null, `${label}${last ? `: ${+(Number(last[k]) || 0).toFixed(2)}` : ''}`)
          el.style.setProperty('--c', color)
          return el
        }),
      ),
    )
  }

  // --- pages ----------------------------------------------------------------

  async function overview() {
    const o = await get('/overview')
    const st = o.stats
    const counts = h(
      'div',
      { class: 'grid counts', id: 'counts' },
      STATUSES.map((k) =>
        h('a', { class: 'card', href: `#/jobs?status=${k}`, 'data-status': k }, h('div', { class: 'mut' }, badge(k)), h('div', { class: 'num' }, st[k])),
      ),
    )
    const health = o.health
    const dims = health ? ['queue', 'workers', 'performance', 'errors', 'storage'].filter((d) => health[d]) : []
    const healthCards = h(
      'div',
      { class: 'grid', id: 'health' },
      health
        ? dims.map((d) =>
            h(
              'div',
              { class: 'card', 'data-dimension': d },
              h('h3', null, d, badge(health[d].status)),
              h(
                'ul',
                { class: 'checks' },
                (health[d].checks || []).map((c) =>
                  h('li', { title: c.rule || '' }, h('span', null, c.metric), h('span', { class: `s-${c.status}` }, `${c.value === null ? '-' : +Number(c.value).toFixed(2)} (${c.status})`)),
                ),
              ),
            ),
          )
        : h('p', { class: 'mut' }, 'Monitoring is disabled.'),
    )
    const sec = (o.trends && o.trends.perSecond && o.trends.perSecond.points) || []
    const min = (o.trends && o.trends.perMinute && o.trends.perMinute.points) || []
    const alerts = o.alerts || []
    return [
      h('h1', null, 'Overview ', health ? badge(health.overall) : null),
      h(
        'p',
        { class: 'mut' },
        `Service ${o.system.status}, storage ${o.system.storage.type}, version ${o.system.version}. Workers busy: `,
        h('strong', { id: 'busy' }, `${st.activeWorkers} / ${st.maxWorkers}`),
        `. Throughput ${+Number(st.throughput).toFixed(1)} jobs/s, average wait ${dur(st.averageWaitTime)}, run ${dur(st.averageRunTime)}.`,
      ),
      counts,
      h('h2', null, 'Health'),
      healthCards,
      h('h2', null, 'Trends'),
      h(
        'div',
        { class: 'grid' },
        chart('Throughput per second', sec.slice(-120), [['throughput', 'jobs/s', '#2454a6'], ['failed', 'failed', '#b42318']]),
        chart('Queue length per second', sec.slice(-120), [['queueLength', 'queued', '#9a6100'], ['busyWorkers', 'busy', '#1e7a3c']]),
        chart('Throughput per minute', min.slice(-60), [['throughput', 'jobs/s', '#2454a6'], ['failed', 'failed', '#b42318']]),
        chart('Queue length per minute', min.slice(-60), [['queueLengthMax', 'max queued', '#9a6100'], ['busyWorkers', 'busy', '#1e7a3c']]),
      ),
      h('h2', null, `Active alerts (${alerts.length})`),
      alertTable(alerts, false),
    ]
  }

  function jobRow(j) {
    return h(
      'tr',
      { 'data-job': j.jobId },
      h('td', { class: 'id' }, h('a', { href: `#/jobs/${encodeURIComponent(j.jobId)}` }, j.jobId)),
      h('td', null, j.name),
      h('td', null, badge(j.status)),
      h('td', { class: 'opt' }, when(j.createdAt)),
      h('td', { class: 'opt' }, j.attempts),
      h('td', { class: 'err' }, j.error ? truncate(j.error.message, 120) : ''),
      h('td', null, h('div', { class: 'actions' }, jobActions(j))),
    )
  }
  function jobActions(j) {
    const out = []
    if (['failed', 'timeout', 'cancelled'].includes(j.status)) out.push(action('Retry', `/jobs/${encodeURIComponent(j.jobId)}/retry`))
    if (['waiting', 'pending', 'running'].includes(j.status)) out.push(action('Cancel', `/jobs/${encodeURIComponent(j.jobId)}/cancel`, { cls: 'danger' }))
    return out
  }
  function truncate(t, n) {
    const str = String(t)
    return str.length > n ? `${str.slice(0, n - 1)}…` : str
  }

  async function jobs(params) {
    const q = new URLSearchParams(params)
    q.delete('trail')
    const data = await get(`/jobs?${q}`)
    const cursors = (params.get('trail') || '').split(',').filter(Boolean)
    const form = h(
      'form',
      {
        class: 'filters',
        role: 'search',
        onsubmit: (ev) => {
          ev.preventDefault()
          const f = new FormData(ev.currentTarget)
          const next = new URLSearchParams()
          for (const [k, v] of f) if (v) next.set(k, k === 'since' || k === 'until' ? String(new Date(v).getTime()) : v)
          location.hash = `#/jobs?${next}`
        },
      },
      h('label', null, 'Status', h('select', { name: 'status' }, h('option', { value: '' }, 'any'), STATUSES.map((x) => h('option', { value: x, selected: params.get('status') === x }, x)))),
      h('label', null, 'Calculation', h('input', { name: 'name', value: params.get('name') || '', placeholder: 'name' })),
      h('label', null, 'Created since', h('input', { name: 'since', type: 'datetime-local', value: localInput(params.get('since')) })),
      h('label', null, 'Until', h('input', { name: 'until', type: 'datetime-local', value: localInput(params.get('until')) })),
      h('label', null, 'Job id', h('input', { name: 'id', value: params.get('id') || '', placeholder: 'uuid', size: 36 })),
      h('button', { type: 'submit' }, 'Search'),
    )
    const more = new URLSearchParams(q)
    const pager = h(
      'div',
      { class: 'pager' },
      cursors.length > 0 ? h('a', { href: '#/jobs?' + back(q, cursors) }, '‹ Newer') : null,
      data.nextCursor ? h('a', { href: '#/jobs?' + fwd(more, data.nextCursor, cursors, params.get('cursor')), id: 'older' }, 'Older ›') : h('span', { class: 'mut' }, 'End of list'),
    )
    return [
      h('h1', null, 'Jobs'),
      form,
      h(
        'div',
        { class: 'tablewrap' },
        h(
          'table',
          { id: 'jobs' },
          h('thead', null, h('tr', null, ['Id', 'Calculation', 'Status', 'Created', 'Attempts', 'Error', 'Actions'].map((t, i) => h('th', { class: i === 3 || i === 4 ? 'opt' : null, scope: 'col' }, t)))),
          h('tbody', null, data.jobs.length ? data.jobs.map(jobRow) : h('tr', null, h('td', { colspan: 7, class: 'mut' }, 'No jobs match.'))),
        ),
      ),
      pager,
    ]
  }
  function localInput(ms) {
    if (!ms) return ''
    const d = new Date(Number(ms))
    if (Number.isNaN(d.getTime())) return ''
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16)
  }
  function fwd(q, next, trail, current) {
    const p = new URLSearchParams(q)
    p.set('cursor', next)
    p.set('trail', [...trail, current || '-'].join(','))
    return p.toString()
  }
  function back(q, trail) {
    const p = new URLSearchParams(q)
    const prev = trail[trail.length - 1]
    if (prev === '-') p.delete('cursor')
    else p.set('cursor', prev)
    if (trail.length > 1) p.set('trail', trail.slice(0, -1).join(','))
    return p.toString()
  }

  function json(v) {
    return h('pre', null, v === undefined || v === null ? 'null' : JSON.stringify(v, null, 2))
  }

  // Where the job came from: the schedule that added it and the jobs it waits for.
  function origin(j, schedule, dependencies) {
    const sid = typeof j.scheduleId === 'string' ? j.scheduleId : schedule ? schedule.id : null
    const deps = dependencies || []
    return h(
      'div',
      { class: 'card', id: 'origin' },
      h('h3', null, 'Origin'),
      sid === null
        ? // Without a scheduleId in the job (an older jobwerk), only a schedule's last job is known.
          h('p', { class: 'mut', id: 'created-by' }, 'scheduleId' in j ? 'Not added by a schedule.' : 'Not the last job of any schedule.')
        : h(
            'p',
            { id: 'created-by' },
            'Created by schedule ',
            h('a', { href: `#/schedules?id=${encodeURIComponent(sid)}`, 'data-schedule-link': sid }, sid),
            schedule ? h('span', { class: 'mut small' }, ` (${schedule.kind}${schedule.enabled ? '' : ', disabled'})`) : h('span', { class: 'mut small' }, ' (no longer scheduled)'),
          ),
      deps.length === 0
        ? h('p', { class: 'mut', id: 'depends-on' }, 'No dependencies.')
        : [
            h('p', null, `Depends on ${deps.length} job${deps.length === 1 ? '' : 's'}`, h('span', { class: 'mut small' }, j.onDependencyFailure === 'ignore' ? ' (runs even if one fails)' : ' (fails if one fails)')),
            h(
              'ul',
              { class: 'deps', id: 'depends-on' },
              deps.map((d) =>
                h('li', { 'data-dependency': d.jobId }, badge(d.status), ' ', h('a', { href: `#/jobs/${encodeURIComponent(d.jobId)}`, class: 'id' }, d.jobId), d.name ? h('span', { class: 'mut small' }, ` ${d.name}`) : null),
              ),
            ),
          ],
    )
  }

  async function jobDetail(id) {
    const { job: j, schedule, dependencies } = await get(`/jobs/${encodeURIComponent(id)}`)
    const kv = (pairs) => h('dl', { class: 'kv' }, pairs.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]))
    return [
      h('p', null, h('a', { href: '#/jobs' }, '‹ Jobs')),
      h('h1', null, `${j.name} `, badge(j.status)),
      h('div', { class: 'actions' }, jobActions(j)),
      h(
        'div',
        { class: 'grid' },
        h(
          'div',
          { class: 'card' },
          h('h3', null, 'Job'),
          kv([
            ['Id', j.jobId],
            ['Priority', j.priority],
            ['Attempts', `${j.attempts} of ${j.maxRetries + 1}`],
            ['Timeout', j.timeout ? dur(j.timeout) : 'none'],
            ['Progress', j.progress === null ? '-' : typeof j.progress === 'object' ? JSON.stringify(j.progress) : String(j.progress)],
            ['Handler', j.registered ? 'registered' : 'not registered in this process'],
          ]),
        ),
        h(
          'div',
          { class: 'card' },
          h('h3', null, 'Timings'),
          kv([
            ['Created', when(j.createdAt)],
            ['Due', when(j.runAt)],
            ['Started', when(j.startedAt)],
            ['Finished', when(j.finishedAt)],
            ['Waited', j.startedAt ? dur(j.startedAt - j.runAt) : '-'],
            ['Ran', j.finishedAt && j.startedAt ? dur(j.finishedAt - j.startedAt) : '-'],
          ]),
        ),
        origin(j, schedule, dependencies),
      ),
      j.error ? [h('h2', null, 'Error'), h('p', { class: 'err', id: 'error-message' }, `${j.error.name}: ${j.error.message}`), h('pre', { class: 'stack' }, j.error.stack || '(no stack)')] : null,
      h('h2', null, 'Data'),
      h('div', { id: 'data' }, json(j.data)),
      h('h2', null, 'Context'),
      json(j.context),
      h('h2', null, 'Result'),
      h('div', { id: 'result' }, json(j.result)),
      h('h2', null, `Attempts with errors (${(j.errors || []).length})`),
      (j.errors || []).length
        ? h(
            'div',
            { class: 'tablewrap' },
            h(
              'table',
              null,
              h('thead', null, h('tr', null, h('th', null, 'Attempt'), h('th', null, 'Error'), h('th', null, 'Stack'))),
              h(
                'tbody',
                null,
                j.errors.map((e) => h('tr', null, h('td', null, e.attempt), h('td', { class: 'err' }, `${e.name}: ${e.message}`), h('td', null, h('details', null, h('summary', null, 'stack'), h('pre', null, e.stack || '(no stack)'))))),
              ),
            ),
          )
        : h('p', { class: 'mut' }, 'No failed attempt.'),
    ]
  }

  async function schedules(params) {
    const { schedules: list } = await get('/schedules')
    const focus = params.get('id')
    return [
      h('h1', null, `Schedules (${list.length})`),
      h(
        'div',
        { class: 'tablewrap' },
        h(
          'table',
          { id: 'schedules' },
          h('thead', null, h('tr', null, ['Id', 'Calculation', 'Kind', 'When', 'Next runs', 'Last run', 'State', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            list.length === 0
              ? h('tr', null, h('td', { colspan: 8, class: 'mut' }, 'No schedules.'))
              : list.map((x) =>
                  h(
                    'tr',
                    { 'data-schedule': x.id, class: x.id === focus ? 'focus' : null, 'aria-current': x.id === focus ? 'true' : null },
                    h('td', { class: 'id' }, x.id),
                    h('td', null, x.name),
                    h('td', null, x.kind),
                    h('td', null, x.kind === 'cron' ? [h('code', null, x.expression), h('div', { class: 'mut small' }, x.tz || 'process time zone')] : x.kind === 'interval' ? `every ${dur(x.intervalMs)}` : 'once'),
                    h('td', { class: 'next-runs' }, x.nextRuns.length ? x.nextRuns.map((t) => h('div', null, when(t))) : h('span', { class: 'mut' }, 'none')),
                    h('td', null, x.lastRunAt ? [when(x.lastRunAt), ' ', x.lastStatus ? badge(x.lastStatus) : null] : h('span', { class: 'mut' }, 'never'), h('div', { class: 'mut small' }, `${x.runCount} runs${x.skippedFires ? `, ${x.skippedFires} skipped` : ''}`)),
                    h('td', null, badge(x.enabled ? 'enabled' : 'disabled')),
                    h(
                      'td',
                      null,
                      h(
                        'div',
                        { class: 'actions' },
                        x.enabled ? action('Disable', `/schedules/${encodeURIComponent(x.id)}/disable`) : action('Enable', `/schedules/${encodeURIComponent(x.id)}/enable`),
                        action('Cancel', `/schedules/${encodeURIComponent(x.id)}/cancel`, {
                          cls: 'danger',
                          name: 'cancel',
                          body: () => (confirm(`Remove schedule ${x.id}? Jobs it added stay.`) ? {} : null),
                        }),
                      ),
                    ),
                  ),
                ),
          ),
        ),
      ),
    ]
  }

  function alertTable(list, history) {
    if (list.length === 0) return h('p', { class: 'mut' }, history ? 'No resolved alerts yet.' : 'No active alerts.')
    return h(
      'div',
      { class: 'tablewrap' },
      h(
        'table',
        { class: history ? 'alert-history' : 'alerts' },
        h('thead', null, h('tr', null, ['Severity', 'Alert', 'Raised', history ? 'Resolved' : 'Acknowledged', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          null,
          list.map((a) =>
            h(
              'tr',
              { 'data-alert': a.id },
              h('td', null, badge(a.severity || 'info')),
              h('td', null, h('strong', null, a.title || a.ruleId), h('div', { class: 'mut small' }, a.message)),
              h('td', null, when(a.triggeredAt || a.createdAt || a.firedAt)),
              h('td', null, history ? when(a.resolvedAt) : a.acknowledgedBy ? `by ${a.acknowledgedBy}` : h('span', { class: 'mut' }, 'no')),
              h(
                'td',
                null,
                history || a.resolvedAt
                  ? null
                  : h(
                      'div',
                      { class: 'actions' },
                      a.acknowledgedBy
                        ? null
                        : action('Acknowledge', `/alerts/${encodeURIComponent(a.id)}/acknowledge`, {
                            body: () => {
                              const by = prompt('Acknowledge as (your name):', localStorage.getItem('jobwerk-name') || '')
                              if (!by) return null
                              localStorage.setItem('jobwerk-name', by)
                              return { by }
                            },
                          }),
                      action('Resolve', `/alerts/${encodeURIComponent(a.id)}/resolve`, { cls: 'danger' }),
                    ),
              ),
            ),
          ),
        ),
      ),
    )
  }

  async function alerts() {
    const { active, history } = await get('/alerts')
    return [h('h1', null, 'Alerts'), h('h2', null, `Active (${active.length})`), alertTable(active, false), h('h2', null, 'History'), alertTable(history.filter((a) => a.resolvedAt), true)]
  }

  // --- router and live updates ------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#/, '') || '/overview'
    const [p, qs] = raw.split('?')
    const parts = p.split('/').filter(Boolean)
    return { parts, params: new URLSearchParams(qs || '') }
  }

  async function render() {
    const seq = ++renderSeq
    const { parts, params } = parseHash()
    const page = parts[0] || 'overview'
    for (const a of document.querySelectorAll('nav a')) {
      if (a.dataset.page === page) a.setAttribute('aria-current', 'page')
      else a.removeAttribute('aria-current')
    }
    let content
    try {
      if (page === 'jobs' && parts[1]) content = await jobDetail(decodeURIComponent(parts[1]))
      else if (page === 'jobs') content = await jobs(params)
      else if (page === 'schedules') content = await schedules(params)
      else if (page === 'alerts') content = await alerts()
      else content = await overview()
    } catch (e) {
      content = [h('h1', null, 'Something went wrong'), h('p', { class: 'err', role: 'alert' }, e.message)]
    }
    if (seq !== renderSeq) return
    const focus = document.activeElement && document.activeElement.closest && document.activeElement.closest('main') ? null : undefined
    main.replaceChildren()
    append(main, [content])
    document.title = `${page[0].toUpperCase()}${page.slice(1)} · jobwerk`
    main.dataset.rendered = String(seq)
    if (focus === null) main.focus()
  }

  let navigated = false
  window.addEventListener('hashchange', () => {
    navigated = true
    render().then(() => {
      main.focus()
      // A link to one schedule (from a job's detail): show its row.
      const marked = main.querySelector('tr.focus')
      if (marked) marked.scrollIntoView({ block: 'center' })
    })
  })

  // One stream per open page; the server sends `change` when counts or alerts
  // changed, and the page then re-reads what it shows (not while typing).
  function live() {
    const el = document.getElementById('live')
    const es = new EventSource(`${BASE}/api/events`)
    let pending = false
    es.addEventListener('hello', () => {
      el.textContent = 'live'
      el.classList.add('on')
    })
    es.addEventListener('change', () => {
      if (pending) return
      pending = true
      setTimeout(() => {
        pending = false
        const a = document.activeElement
        if (a && (a.tagName === 'INPUT' || a.tagName === 'SELECT')) return
        render()
      }, 100)
    })
    es.onerror = () => {
      el.textContent = 'reconnecting'
      el.classList.remove('on')
    }
    window.addEventListener('pagehide', () => es.close())
  }

  render()
  live()
  void navigated
})()
