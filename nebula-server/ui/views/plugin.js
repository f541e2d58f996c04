// One plugin: its record, health (check now), statistics, the tail of its logs, its recent
// events, and start / stop / restart.

import { announce, badge, busy, el, facts, formatClock, formatMs, formatTime, replaceChildren, row, table } from '../dom.js';
import { counters } from './plugins.js';

/** Log lines and events shown. */
const LOG_TAIL = 50;
const EVENT_LIMIT = 20;

const ACTION_DONE = { start: 'started', stop: 'stopped', restart: 'restarted' };

/**
 * @param {HTMLElement} main
 * @param {object} ctx see app.js
 * @param {string} name the plugin
 */
export function renderPlugin(main, ctx, name) {
  const heading = el('h1', { id: 'plugin-heading', text: name });
  const statusBadge = el('span', { id: 'plugin-status' });
  const description = el('p', { class: 'lede' });

  const buttons = {
    health: el('button', { type: 'button', id: 'check-health', class: 'button', text: 'Check health now' }),
    start: el('button', { type: 'button', id: 'action-start', class: 'button', text: 'Start' }),
    stop: el('button', { type: 'button', id: 'action-stop', class: 'button', text: 'Stop' }),
    restart: el('button', { type: 'button', id: 'action-restart', class: 'button', text: 'Restart' }),
  };
  const syncLink = el('a', { href: `#/plugins/${encodeURIComponent(name)}/sync`, id: 'open-sync', class: 'button button-primary', text: 'Sync users…' });

  const overview = el('div', { id: 'plugin-overview' });
  const healthOut = el('div', { id: 'health-result' }, el('p', { class: 'hint', text: 'Not checked from this page yet. The health monitor checks every plugin on its own schedule.' }));
  const statsOut = el('div', { id: 'plugin-stats' });
  const refreshed = el('span', { text: 'loading…' });

  const logs = table({
    id: 'logs-table', caption: `Last ${LOG_TAIL} log lines, newest last`,
    columns: [{ label: 'Time' }, { label: 'Level' }, { label: 'Message' }],
  });
  const events = table({
    id: 'events-table', caption: `Recent events, newest first`,
    columns: [{ label: 'Time' }, { label: 'Event' }, { label: 'Payload' }],
  });

  let record = null;
  let gone = false;

  /** Shows the record; a status change is announced unless `quiet` (the caller says it). */
  function showRecord(r, quiet = false) {
    const statusChanged = !quiet && record && record.status !== r.status;
    record = r;
    replaceChildren(statusBadge, badge(r.status));
    description.textContent = r.description || '';
    replaceChildren(overview, facts([
      ['Status', badge(r.status)],
      ['Message', r.message],
      ['Error', r.error ? el('span', { class: 'cell-error', text: r.error }) : 'none'],
      ['Enabled', r.enabled === false ? 'no (stopped or disabled by policy)' : 'yes'],
      ['Version', r.version],
      ['Source', r.source],
      ['API version', r.api_version],
      ['Origin', r.origin ? el('span', { class: 'mono wrap-anywhere', text: r.origin }) : null],
      ['Scopes', (r.scopes ?? []).join(', ')],
      ['Initialised', formatTime(r.initialized_at)],
      ['Updated', formatTime(r.updated_at)],
      ['Last call', formatMs(r.last_call_ms)],
      ['Counters', counters(r)],
    ]));
    const enabled = r.enabled !== false;
    buttons.start.disabled = enabled;
    buttons.stop.disabled = !enabled;
    buttons.restart.disabled = !enabled;
    if (statusChanged) announce(`${name} is now ${r.status}.`);
  }

  function showStats(stats) {
    const methods = Object.entries(stats.methods ?? {});
    const t = table({
      id: 'stats-table', caption: 'Calls per method (latency over the last 1024 calls)',
      columns: [{ label: 'Method' }, ...['calls', 'ok', 'errors', 'timeouts', 'panics', 'p50', 'p95', 'p99', 'max'].map((label) => ({ label, num: true }))],
    });
    for (const [method, m] of methods) {
      t.body.append(row([
        el('th', { scope: 'row', text: method }),
        ...['calls', 'ok', 'errors', 'timeouts', 'panics'].map((k) => el('td', { class: 'num', text: String(m[k] ?? 0) })),
        ...['p50_ms', 'p95_ms', 'p99_ms', 'max_ms'].map((k) => el('td', { class: 'num', text: formatMs(m[k]) })),
      ]));
    }
    if (!methods.length) t.body.append(row([el('td', { colspan: '10', class: 'empty', text: 'No calls yet.' })]));
    const extra = [['Uptime', stats.uptime_sec === null || stats.uptime_sec === undefined ? 'not running' : `${Math.round(stats.uptime_sec)} s`]];
    if (stats.process) {
      extra.push(['Process id', stats.process.pid === null ? 'none running' : String(stats.process.pid)]);
      extra.push(['Resident memory', stats.process.rss_bytes === null ? '—' : `${(stats.process.rss_bytes / 1048576).toFixed(1)} MiB`]);
    }
    replaceChildren(statsOut, facts(extra), el('div', { class: 'stack' }, t.wrap));
  }

  function showLogs(answer) {
    const lines = answer.lines ?? [];
    replaceChildren(logs.body, lines.map((line) => row([
      el('td', { class: 'nowrap', text: formatTime(line.ts) }),
      el('td', { class: `log-level-${String(line.level).replace(/[^a-z]/g, '')}`, text: line.level }),
      el('td', { class: 'mono wrap-anywhere', text: line.message }),
    ])));
    if (!lines.length) logs.body.append(row([el('td', { colspan: '3', class: 'empty', text: 'No log lines.' })]));
  }

  function showEvents(list) {
    replaceChildren(events.body, list.map((event) => row([
      el('td', { class: 'nowrap', text: formatTime(event.created_at) }),
      el('td', { class: 'mono', text: event.name }),
      el('td', { class: 'mono wrap-anywhere', text: JSON.stringify(event.payload) }),
    ])));
    if (!list.length) events.body.append(row([el('td', { colspan: '3', class: 'empty', text: 'No events.' })]));
  }

  async function refresh(quiet = false) {
    if (gone) return;
    try {
      // The record comes from the list (the one cached answer of the server).
      const [list, stats, logLines, systemEvents, pluginEvents] = await Promise.all([
        ctx.api.plugins(),
        ctx.api.stats(name),
        ctx.api.logs(name, LOG_TAIL),
        // State changes, and what the plugin itself emitted.
        ctx.api.events(`system.plugin.${name}.`, EVENT_LIMIT),
        ctx.api.events(`plugin.${name}.`, EVENT_LIMIT),
      ]);
      const r = (list.plugins ?? []).find((p) => p.name === name);
      if (!r) {
        gone = true;
        ctx.fail(new Error(`There is no plugin named ${name} (any more).`));
        return;
      }
      showRecord(r, quiet);
      showStats(stats);
      showLogs(logLines);
      const merged = [...(systemEvents.events ?? []), ...(pluginEvents.events ?? [])]
        .sort((a, b) => b.id - a.id)
        .slice(0, EVENT_LIMIT);
      showEvents(merged);
      refreshed.textContent = formatClock();
    } catch (e) {
      if (e && e.status === 404) gone = true;
      ctx.fail(e);
    }
  }

  buttons.health.addEventListener('click', () => busy(buttons.health, async () => {
    try {
      const answer = await ctx.api.health(name);
      if (answer && answer.health) {
        const status = answer.health.status ?? 'unknown';
        replaceChildren(healthOut,
          el('p', {}, 'Checked at ', formatClock(), ': ', badge(status)),
          el('pre', { class: 'json', text: JSON.stringify(answer.health, null, 2) }));
        announce(`Health of ${name}: ${status}.`);
      } else {
        // A 503 without a health answer: the plugin is not available.
        const detail = answer && answer.detail ? answer.detail : 'no answer';
        replaceChildren(healthOut, el('p', {}, 'Checked at ', formatClock(), ': ', badge('error'), ' ', detail));
        announce(`Health of ${name}: ${detail}.`);
      }
    } catch (e) {
      replaceChildren(healthOut, el('p', {}, 'Checked at ', formatClock(), ': ', badge('error'), ' ', e instanceof Error ? e.message : String(e)));
      ctx.fail(e);
    }
    await refresh();
  }));

  for (const action of ['start', 'stop', 'restart']) {
    buttons[action].addEventListener('click', async () => {
      await busy(buttons[action], async () => {
        let done = false;
        try {
          await ctx.api.action(name, action);
          done = true;
        } catch (e) {
          ctx.fail(e);
        }
        await refresh(true);
        if (done) announce(`${name} ${ACTION_DONE[action]}; its status is now ${record ? record.status : 'unknown'}.`);
      });
      // `busy` gave the button its old state back: apply the record's again.
      if (record) showRecord(record);
      // The button just used may now be disabled (stop → start): keep focus in the toolbar.
      const next = action === 'stop' ? buttons.start : action === 'start' ? buttons.stop : buttons.restart;
      if (document.activeElement === document.body || buttons[action].disabled) next.focus();
    });
  }

  main.append(
    el('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' }, el('a', { href: '#/', text: 'Plugins' }), ' / ', name),
    el('div', { class: 'view-head' },
      el('div', { class: 'title-line' }, heading, statusBadge),
      el('div', { class: 'toolbar', role: 'group', 'aria-label': `Actions on ${name}` },
        buttons.health, buttons.start, buttons.stop, buttons.restart, syncLink)),
    description,
    el('p', { class: 'hint' }, `Refreshed every ${ctx.POLL_MS / 1000} seconds; last refreshed `, refreshed, '.'),
    el('div', { class: 'grid' },
      el('section', { class: 'card', 'aria-labelledby': 'overview-heading' }, el('h2', { id: 'overview-heading', text: 'Overview' }), overview),
      el('section', { class: 'card', 'aria-labelledby': 'health-heading' }, el('h2', { id: 'health-heading', text: 'Health' }), healthOut)),
    el('section', { class: 'stack', 'aria-labelledby': 'stats-heading' }, el('h2', { id: 'stats-heading', text: 'Statistics' }), statsOut),
    el('section', { class: 'stack', 'aria-labelledby': 'logs-heading' }, el('h2', { id: 'logs-heading', text: 'Logs' }), logs.wrap),
    el('section', { class: 'stack', 'aria-labelledby': 'events-heading' }, el('h2', { id: 'events-heading', text: 'Events' }), events.wrap),
  );
  const stop = ctx.poll(refresh);
  return { heading, title: name, destroy: stop };
}
