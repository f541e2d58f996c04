// The one way the page talks to the server. Every request carries the session cookie
// (`credentials: 'same-origin'`) and nothing else: the installer token is never typed into,
// stored by or sent from this page. Every POST is `Content-Type: application/json` from this
// page's own origin, as SPEC §11 requires of cookie-authenticated state changes; the server
// refuses anything else.

/** A refused or failed request, with the server's `detail`. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: the server could not be reached)
   * @param {string} detail what the server said, or what went wrong
   * @param {unknown} [body] the parsed answer, when there was one
   */
  constructor(status, detail, body) {
    super(detail);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
    this.body = body;
  }

  /** The session is missing, expired or no longer valid: log in again. */
  get sessionEnded() {
    return this.status === 403 && this.detail === 'Forbidden';
  }
}

/**
 * @param {'GET'|'POST'} method
 * @param {string} path
 * @param {unknown} [body] sent as JSON on a POST (`{}` when absent)
 * @param {{accept?: number[]}} [options] statuses whose JSON answer is data, not an error
 */
async function request(method, path, body, options = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (method !== 'GET') {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `The server cannot be reached (${e instanceof Error ? e.message : e}).`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.ok || (options.accept ?? []).includes(response.status)) {
    return data;
  }
  const detail = data && typeof data.detail === 'string'
    ? data.detail
    : `${response.status} ${response.statusText || 'error'}`;
  throw new ApiError(response.status, detail, data);
}

const plugin = (name) => encodeURIComponent(name);

/** Every call the page makes (nebula-server/tests/ui_browser.rs reads this list). */
export const api = {
  login: (username, password) => request('POST', '/auth/login', { username, password }),
  logout: () => request('POST', '/auth/logout', {}),
  plugins: () => request('GET', '/system/plugins'),
  rescan: () => request('POST', '/system/plugins/rescan', {}),
  // 503 is the plugin's own non-ok answer, in the same shape: data to show.
  health: (name) => request('GET', `/system/plugins/${plugin(name)}/health`, undefined, { accept: [503] }),
  stats: (name) => request('GET', `/system/plugins/${plugin(name)}/stats`),
  logs: (name, tail) => request('GET', `/system/plugins/${plugin(name)}/logs?tail=${tail}`),
  events: (prefix, limit) => request('GET', `/system/events?prefix=${encodeURIComponent(prefix)}&limit=${limit}`),
  action: (name, action) => request('POST', `/system/plugins/${plugin(name)}/action`, { action }),
  sync: (name, body) => request('POST', `/system/plugins/${plugin(name)}/sync-users`, body),
};
