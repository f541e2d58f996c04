// Sync: the users editor (JSON or CSV), a dry run preview first, then the real run behind a
// confirmation that shows the counts, then the per-item report (filter: failed items only).

import { announce, badge, busy, el, focusHeading, replaceChildren, row, table } from '../dom.js';
import { COLUMNS, ParseError, parseUsers } from '../users.js';

/** Item keys shown first, in this order; any other key a plugin reports follows. */
const KNOWN_ITEM_KEYS = ['action', 'username', 'db_name', 'role_tag', 'error'];
/** Summary keys of a report or a preview, in this order; any other number a plugin reports
 * at the top of its answer follows (ldap_sync's `unchanged`, `deactivated`, `would_…`). */
const COUNT_KEYS = ['count', 'created', 'updated', 'unchanged', 'deactivated', 'failed',
  'would_create', 'would_update', 'would_deactivate', 'would_fail'];

/** The numeric summary keys of an answer: the known ones first, then the rest as they come. */
function countKeys(result) {
  const numeric = Object.keys(result).filter((k) => typeof result[k] === 'number');
  return [...COUNT_KEYS.filter((k) => numeric.includes(k)), ...numeric.filter((k) => !COUNT_KEYS.includes(k))];
}

/** An item's tenant: its own, else the answer's (a plugin syncing one tenant names it once). */
function tenantOf(item, result) {
  return item.db_name ?? result.db_name ?? 'system.db';
}

const EXAMPLE = `username,db_name,role_tag,email
jane.roe,acme,developer,jane@example.com`;

/** An item failed when the plugin says so. */
function failed(item) {
  return item && (item.action === 'failed' || item.status === 'failed' || (typeof item.error === 'string' && item.error !== ''));
}

/** The columns of a list of items: the known ones first, then the rest as they come. */
function itemColumns(items) {
  const keys = new Set();
  for (const item of items) for (const key of Object.keys(item ?? {})) keys.add(key);
  return [...KNOWN_ITEM_KEYS.filter((k) => keys.has(k)), ...[...keys].filter((k) => !KNOWN_ITEM_KEYS.includes(k))];
}

function cellValue(key, value) {
  if (value === undefined || value === null) return '';
  if (key === 'action' || key === 'status') return badge(value);
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** The items of a sync answer as a table; `filter` (optional) picks the rows shown. */
function itemsTable(id, captionText, items, filter = () => true) {
  const columns = itemColumns(items);
  const t = table({ id, caption: captionText, columns: [{ label: '#', num: true }, ...columns.map((label) => ({ label }))] });
  items.forEach((item, i) => {
    if (!filter(item)) return;
    t.body.append(row([
      el('td', { class: 'num', text: String(i + 1) }),
      ...columns.map((key) => el('td', { class: key === 'error' ? 'wrap-anywhere' : null },
        key === 'error' && item[key] ? el('span', { class: 'cell-error', text: String(item[key]) }) : cellValue(key, item[key]))),
    ], { 'data-failed': failed(item) ? 'true' : 'false' }));
  });
  if (!t.body.children.length) {
    t.body.append(row([el('td', { colspan: String(columns.length + 1), class: 'empty', text: 'No items.' })]));
  }
  return t;
}

/** Counts per tenant, for the confirmation: "acme: 2, system.db: 1". */
function byTenant(items, result) {
  const counts = new Map();
  for (const item of items) {
    const tenant = tenantOf(item, result);
    counts.set(tenant, (counts.get(tenant) ?? 0) + 1);
  }
  return [...counts.entries()].map(([tenant, n]) => `${tenant}: ${n}`).join(', ');
}

/**
 * @param {HTMLElement} main
 * @param {object} ctx see app.js
 * @param {string} name the plugin
 */
export function renderSync(main, ctx, name) {
  const heading = el('h1', { id: 'sync-heading', text: `Sync users: ${name}` });

  // The editor.
  const editor = el('textarea', {
    id: 'users-input', name: 'users', rows: '7', spellcheck: 'false', autocomplete: 'off',
    'aria-describedby': 'users-help users-error', placeholder: EXAMPLE,
  });
  const parseError = el('p', { id: 'users-error', class: 'field-error', role: 'alert', hidden: true });
  const limit = el('input', { id: 'limit-input', name: 'limit', type: 'number', min: '0', max: '10000', step: '1', value: '0', 'aria-describedby': 'limit-help' });
  const dryRun = el('button', { type: 'submit', id: 'dry-run', class: 'button button-primary', text: 'Dry run' });
  const form = el('form', { id: 'sync-form', novalidate: true },
    el('label', { for: 'users-input', text: 'Users' }),
    el('p', { id: 'users-help', class: 'hint' },
      'Paste a JSON array of user objects, or CSV with a header row naming columns among ',
      el('code', { text: COLUMNS.join(', ') }), ' (only ', el('code', { text: 'username' }), ' is required; ',
      el('code', { text: 'db_name' }), ' defaults to ', el('code', { text: 'system.db' }), ', whose users plugins never write). ',
      'Leave it empty to send an empty list: plugins that read their users from elsewhere, such as ',
      el('code', { text: 'ldap_sync' }), ', are run that way.'),
    editor, parseError,
    el('label', { for: 'limit-input', text: 'Limit' }),
    limit, el('span', { id: 'limit-help', class: 'hint' }, ' 0 processes every user; n processes at most the first n.'),
    el('div', { class: 'form-actions' }, dryRun, el('span', { class: 'hint', text: 'A dry run writes nothing.' })));

  // The preview.
  const previewHeading = el('h2', { id: 'preview-heading', text: 'Dry run preview' });
  const previewSummary = el('div', { id: 'preview-summary' });
  const previewTable = el('div', { id: 'preview-table-slot' });
  const realRun = el('button', { type: 'button', id: 'real-run', class: 'button button-danger', text: 'Run the real sync…' });
  const preview = el('section', { id: 'preview', class: 'card', hidden: true, 'aria-labelledby': 'preview-heading' },
    previewHeading, previewSummary, previewTable,
    el('div', { class: 'form-actions' }, realRun, el('span', { class: 'hint', text: 'Writes to the directory, after a confirmation.' })));

  // The confirmation.
  const confirmText = el('div', { id: 'confirm-text' });
  const cancel = el('button', { type: 'button', id: 'confirm-cancel', class: 'button', text: 'Cancel' });
  const confirm = el('button', { type: 'button', id: 'confirm-run', class: 'button button-danger', text: 'Run the sync' });
  const dialog = el('dialog', { id: 'confirm-dialog', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-text' },
    el('h2', { id: 'confirm-title', text: `Run the real sync of ${name}?` }),
    confirmText,
    el('div', { class: 'dialog-actions' }, cancel, confirm));

  // The report.
  const reportHeading = el('h2', { id: 'report-heading', text: 'Sync report' });
  const reportSummary = el('div', { id: 'report-summary' });
  const failedOnly = el('input', { type: 'checkbox', id: 'failed-only' });
  const reportTable = el('div', { id: 'report-table-slot' });
  const report = el('section', { id: 'report', class: 'card', hidden: true, 'aria-labelledby': 'report-heading' },
    reportHeading, reportSummary,
    el('p', {}, el('label', { class: 'inline', for: 'failed-only' }, failedOnly, 'Show failed items only')),
    reportTable);

  /** The request the preview was made for: the real run sends exactly this, with dry_run false. */
  let previewed = null;
  let reportItems = [];

  function request() {
    const { users } = parseUsers(editor.value);
    const n = Number(limit.value || '0');
    if (!Number.isInteger(n) || n < 0 || n > 10000) throw new ParseError('Limit must be a whole number from 0 to 10000.');
    return { users, limit: n };
  }

  function showParseError(text) {
    parseError.textContent = text;
    parseError.hidden = false;
    editor.setAttribute('aria-invalid', 'true');
    editor.focus();
  }

  function clearParseError() {
    parseError.hidden = true;
    parseError.textContent = '';
    editor.removeAttribute('aria-invalid');
  }

  // Any edit after a preview makes it stale: the real run is only offered for what was previewed.
  for (const input of [editor, limit]) {
    input.addEventListener('input', () => {
      if (previewed) {
        previewed = null;
        preview.hidden = true;
        announce('The users changed: run a dry run again before the real sync.');
      }
      clearParseError();
    });
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    let body;
    try {
      body = request();
    } catch (e) {
      if (e instanceof ParseError) { showParseError(e.message); return; }
      throw e;
    }
    clearParseError();
    busy(dryRun, async () => {
      try {
        const answer = await ctx.api.sync(name, { dry_run: true, ...body });
        const result = answer.result ?? {};
        const items = Array.isArray(result.items) ? result.items : [];
        previewed = { body, result, items };
        const count = typeof result.count === 'number' ? result.count : items.length;
        replaceChildren(previewSummary,
          el('p', {}, 'Status ', badge(result.status ?? 'unknown'), ` — ${count} user${count === 1 ? '' : 's'} would be synced. Nothing was written.`),
          items.length ? null : el('pre', { class: 'json', text: JSON.stringify(result, null, 2) }));
        replaceChildren(previewTable, itemsTable('preview-table', `Dry run preview: ${items.length} item${items.length === 1 ? '' : 's'}`, items).wrap);
        report.hidden = true;
        preview.hidden = false;
        focusHeading(previewHeading, 'section');
        announce(`Dry run done: ${count} user${count === 1 ? '' : 's'} would be synced.`);
      } catch (e) {
        ctx.fail(e);
      }
    });
  });

  realRun.addEventListener('click', () => {
    if (!previewed) return;
    const { items, result } = previewed;
    const count = typeof result.count === 'number' ? result.count : items.length;
    const system = items.filter((i) => tenantOf(i, result) === 'system.db').length;
    const planned = countKeys(result).filter((k) => k !== 'count');
    replaceChildren(confirmText,
      el('p', { text: `This writes to the directory. The dry run counted:` }),
      el('dl', { class: 'counts' },
        el('div', {}, el('dt', { text: 'Users' }), el('dd', { id: 'confirm-count', text: String(count) })),
        el('div', {}, el('dt', { text: 'Tenants' }), el('dd', { text: String(new Set(items.map((i) => tenantOf(i, result))).size) })),
        planned.map((k) => el('div', { 'data-count': k }, el('dt', { text: k }), el('dd', { text: String(result[k]) })))),
      items.length ? el('p', { class: 'hint', text: `Per tenant: ${byTenant(items, result)}.` }) : null,
      system ? el('p', { class: 'warning', text: `${system} user${system === 1 ? ' is' : 's are'} in system.db and will fail: plugins never create or modify system users.` }) : null);
    confirm.textContent = `Sync ${count} user${count === 1 ? '' : 's'}`;
    dialog.returnValue = '';
    dialog.showModal();
    // The safe choice has the focus.
    cancel.focus();
  });

  cancel.addEventListener('click', () => dialog.close('cancel'));
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'run') {
      realRun.focus();
      announce('Real sync cancelled; nothing was written.');
    }
  });

  confirm.addEventListener('click', () => {
    if (!previewed) return;
    const body = previewed.body;
    dialog.close('run');
    busy(realRun, async () => {
      try {
        const answer = await ctx.api.sync(name, { dry_run: false, ...body });
        showReport(answer.result ?? {});
      } catch (e) {
        ctx.fail(e);
        realRun.focus();
      }
    });
  });

  function renderReportTable() {
    const onlyFailed = failedOnly.checked;
    const shown = onlyFailed ? reportItems.filter(failed) : reportItems;
    const t = itemsTable('report-table',
      onlyFailed ? `Failed items: ${shown.length} of ${reportItems.length}` : `All items: ${reportItems.length}`,
      reportItems, onlyFailed ? failed : () => true);
    replaceChildren(reportTable, t.wrap);
  }

  function showReport(result) {
    reportItems = Array.isArray(result.items) ? result.items : [];
    const counts = countKeys(result);
    const failures = reportItems.filter(failed).length;
    replaceChildren(reportSummary,
      el('p', {}, 'Status ', badge(result.status ?? 'unknown')),
      counts.length
        ? el('dl', { class: 'counts', id: 'report-counts' }, counts.map((k) => el('div', { 'data-count': k }, el('dt', { text: k }), el('dd', { text: String(result[k]) }))))
        : null,
      reportItems.length ? null : el('pre', { class: 'json', text: JSON.stringify(result, null, 2) }));
    failedOnly.checked = false;
    failedOnly.disabled = failures === 0;
    renderReportTable();
    preview.hidden = true;
    previewed = null;
    report.hidden = false;
    focusHeading(reportHeading, 'section');
    const summary = counts.map((k) => `${result[k]} ${k}`).join(', ');
    announce(`Sync finished with status ${result.status ?? 'unknown'}${summary ? `: ${summary}` : ''}.`);
  }

  failedOnly.addEventListener('change', () => {
    renderReportTable();
    announce(failedOnly.checked ? 'Showing failed items only.' : 'Showing all items.');
  });

  main.append(
    el('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      el('a', { href: '#/', text: 'Plugins' }), ' / ', el('a', { href: `#/plugins/${encodeURIComponent(name)}`, text: name }), ' / Sync users'),
    el('div', { class: 'view-head' }, heading),
    el('p', { class: 'lede', text: 'First a dry run shows what would be synced; nothing is written until you confirm the real run.' }),
    el('section', { class: 'card', 'aria-label': 'Users to sync' }, form),
    preview, report, dialog);
  return { heading, title: `Sync ${name}`, destroy() { if (dialog.open) dialog.close(); } };
}
