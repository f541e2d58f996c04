// Building the page from data. Text always goes in through textContent, never parsed as HTML, so a
// plugin's name, message, error or log line can never become markup.

/**
 * Creates an element.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs] attributes; `class`, `text`, `hidden`, `disabled`,
 *   `on<event>` (a listener) are understood, `null`/`undefined`/`false` values are skipped.
 * @param {...(Node|string|null|undefined|false)} children
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'text') node.textContent = String(value);
    else if (key === 'class') node.className = String(value);
    else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

/** Appends children (strings become text nodes). */
export function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Replaces all children of `node`. */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A status badge: `healthy`, `disabled`, `failed`… (the class picks the colour). */
export function badge(value) {
  const text = String(value ?? '');
  const safe = text.replace(/[^a-z_]/gi, '');
  return el('span', { class: `badge badge-${safe}`, text });
}

/**
 * A table inside a horizontally scrolling, keyboard-reachable frame.
 * @param {{id?: string, caption: string, columns: {label: string, num?: boolean}[]}} spec
 * @returns {{wrap: HTMLElement, table: HTMLTableElement, caption: HTMLElement, body: HTMLElement}}
 */
export function table({ id, caption, columns }) {
  const captionEl = el('caption', { id: id ? `${id}-caption` : null, text: caption });
  const body = el('tbody');
  const tableEl = el('table', { id },
    captionEl,
    el('thead', {}, el('tr', {}, columns.map((c) => el('th', { scope: 'col', class: c.num ? 'num' : null, text: c.label })))),
    body);
  // A frame that scrolls must be focusable, so keyboard users can scroll it.
  const wrap = el('div', { class: 'table-wrap', role: 'region', tabindex: '0', 'aria-labelledby': id ? `${id}-caption` : null }, tableEl);
  return { wrap, table: tableEl, caption: captionEl, body };
}

/** A row of cells; strings become `<td>` text, nodes are wrapped in `<td>`. */
export function row(cells, attrs = {}) {
  return el('tr', attrs, cells.map((cell) => {
    if (cell instanceof HTMLTableCellElement) return cell;
    return el('td', {}, cell === null || cell === undefined ? '' : cell);
  }));
}

/** A `<dl>` of label → value pairs. */
export function facts(pairs, className = 'facts') {
  return el('dl', { class: className }, pairs.map(([label, value]) => el('div', { class: 'fact' },
    el('dt', { text: label }),
    el('dd', {}, value === null || value === undefined || value === '' ? '—' : value))));
}

/** Float Unix seconds as a local date and time; `0` or nothing as a dash. */
export function formatTime(seconds) {
  if (!seconds) return '—';
  return new Date(seconds * 1000).toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** Float Unix seconds, short: the time of day when it is today, else the date and time. */
export function formatShortTime(seconds) {
  if (!seconds) return '—';
  const date = new Date(seconds * 1000);
  if (date.toDateString() === new Date().toDateString()) return formatClock(date);
  return date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** A time of day only, for "last refreshed". */
export function formatClock(date = new Date()) {
  return date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** Milliseconds, short. */
export function formatMs(ms) {
  if (ms === null || ms === undefined) return '—';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

// The page's two shared regions (index.html): polite announcements and errors.
let announceTimer = 0;

/** Says `text` in the polite live region (screen readers read it; the line shows it too). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  // Emptied first so that the same text said twice is announced twice.
  region.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { region.textContent = text; }, 30);
}

/** Shows an error in the page's alert region (read at once by screen readers). */
export function showError(text) {
  const box = document.getElementById('alert');
  const textEl = document.getElementById('alert-text');
  if (!box || !textEl) return;
  textEl.textContent = text;
  box.hidden = false;
}

/** Hides the page's alert region. */
export function clearError() {
  const box = document.getElementById('alert');
  if (box) box.hidden = true;
}

/**
 * Moves keyboard and screen-reader focus to a heading: of a new view (the page scrolls to the
 * top) or of a section just shown (scrolled to the top of the window).
 * @param {HTMLElement} heading
 * @param {'view'|'section'} [kind]
 */
export function focusHeading(heading, kind = 'view') {
  if (!heading) return;
  heading.setAttribute('tabindex', '-1');
  heading.focus({ preventScroll: true });
  if (kind === 'view') window.scrollTo(0, 0);
  else (heading.closest('section') ?? heading).scrollIntoView({ block: 'start' });
}

/**
 * Runs `work` with `button` busy (disabled, `aria-busy`), and restores it after.
 * @template T
 * @param {HTMLButtonElement} button
 * @param {() => Promise<T>} work
 * @returns {Promise<T>}
 */
export async function busy(button, work) {
  const wasDisabled = button.disabled;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = wasDisabled;
  }
}
