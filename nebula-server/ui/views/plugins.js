// The plugin table, refreshed every few seconds; rescan for the whole list.

import { announce, badge, busy, el, formatClock, formatMs, formatShortTime, replaceChildren, table } from '../dom.js';

const COLUMNS = [
  { label: 'Name' },
  { label: 'Source' },
  { label: 'Status' },
  { label: 'Message / error' },
  { label: 'Version' },
  { label: 'Counters' },
  { label: 'Last call' },
  { label: 'Actions' },
];

/** The record's counters, as shown (label, field). */
const COUNTERS = [
  ['restarts', 'restart_count'],
  ['auto', 'auto_restarts'],
  ['timeouts', 'consecutive_timeouts'],
  ['health failures', 'consecutive_health_failures'],
  ['crashes', 'consecutive_crashes'],
];

/** Counters of a plugin record, as a compact list. */
export function counters(record) {
  return el('span', { class: 'counters' }, COUNTERS.map(([label, field]) => {
    const value = Number(record[field] ?? 0);
    return el('span', { class: value > 0 && field !== 'restart_count' ? 'nonzero' : null }, `${label} `, el('b', { text: String(value) }));
  }));
}

/** The message and, when there is one, the error. */
export function messageCell(record) {
  return el('td', { class: 'wrap-anywhere' },
    el('span', { text: record.message || '—' }),
    record.error ? el('span', { class: 'cell-error', text: record.error }) : null);
}

/**
 * @param {HTMLElement} main
 * @param {object} ctx see app.js
 */
export function renderPlugins(main, ctx) {
  const heading = el('h1', { id: 'plugins-heading', text: 'Plugins' });
  const rescan = el('button', { type: 'button', id: 'rescan', class: 'button', text: 'Rescan plugins' });
  const refreshed = el('span', { id: 'plugins-refreshed', text: 'loading…' });
  const { wrap, caption, body } = table({ id: 'plugins-table', caption: 'Plugins', columns: COLUMNS });

  /** The last status seen per plugin, to announce changes. */
  const lastStatus = new Map();
  /** One row per plugin, updated in place so keyboard focus inside the table survives a refresh. */
  const rows = new Map();

  function rowFor(record) {
    const name = record.name;
    let entry = rows.get(name);
    if (!entry) {
      const link = el('a', { href: `#/plugins/${encodeURIComponent(name)}`, class: 'cell-main', text: name });
      const sync = el('a', {
        href: `#/plugins/${encodeURIComponent(name)}/sync`, class: 'button button-small',
        'aria-label': `Sync users with ${name}`, text: 'Sync users…',
      });
      entry = {
        tr: el('tr', { 'data-plugin': name }),
        name: el('th', { scope: 'row' }, link),
        source: el('td'), status: el('td', { class: 'status-cell' }), message: el('td'),
        version: el('td'), counters: el('td'), last: el('td', { class: 'nowrap' }),
        actions: el('td', {}, sync),
      };
      entry.tr.append(entry.name, entry.source, entry.status, entry.message, entry.version, entry.counters, entry.last, entry.actions);
      rows.set(name, entry);
    }
    replaceChildren(entry.source, record.source);
    replaceChildren(entry.status, badge(record.status), record.enabled === false && record.status !== 'disabled'
      ? el('span', { class: 'cell-sub', text: 'disabled' }) : null);
    const message = messageCell(record);
    entry.message.replaceWith(message);
    entry.message = message;
    replaceChildren(entry.version, record.version || '—');
    replaceChildren(entry.counters, counters(record));
    replaceChildren(entry.last, formatMs(record.last_call_ms), el('span', { class: 'cell-sub', text: `updated ${formatShortTime(record.updated_at)}` }));
    return entry.tr;
  }

  function show(plugins) {
    const seen = new Set();
    const ordered = plugins.map((record) => { seen.add(record.name); return rowFor(record); });
    for (const [name, entry] of rows) {
      if (!seen.has(name)) { entry.tr.remove(); rows.delete(name); lastStatus.delete(name); }
    }
    // Re-append in the server's order (moves existing rows; focus inside them is kept).
    ordered.forEach((tr, i) => { if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] ?? null); });
    caption.textContent = `${plugins.length} plugin${plugins.length === 1 ? '' : 's'}, sorted by source and name`;
    const changes = [];
    for (const record of plugins) {
      const before = lastStatus.get(record.name);
      if (before !== undefined && before !== record.status) changes.push(`${record.name} is now ${record.status}`);
      lastStatus.set(record.name, record.status);
    }
    if (changes.length) announce(`${changes.join('; ')}.`);
    refreshed.textContent = formatClock();
  }

  async function refresh() {
    try {
      const answer = await ctx.api.plugins();
      show(answer.plugins ?? []);
    } catch (e) {
      ctx.fail(e);
    }
  }

  rescan.addEventListener('click', () => busy(rescan, async () => {
    try {
      const answer = await ctx.api.rescan();
      show(answer.plugins ?? []);
      announce(`Rescan done: ${answer.plugins.length} plugins.`);
    } catch (e) {
      ctx.fail(e);
    }
  }));

  main.append(el('section', { 'aria-labelledby': 'plugins-heading' },
    el('div', { class: 'view-head' }, heading, el('div', { class: 'toolbar' }, rescan)),
    el('p', { class: 'hint' }, `Refreshed every ${ctx.POLL_MS / 1000} seconds while this tab is visible; last refreshed `, refreshed, '. Rescan reads the external plugins and plugin directories again.'),
    wrap));
  const stop = ctx.poll(refresh);
  return { heading, title: 'Plugins', destroy: stop };
}
