// The page's controller: the session gate, the router (`#/`, `#/plugins/NAME`,
// `#/plugins/NAME/sync`), polling, and the shared announcement and error regions.

import { api } from './api.js';
import { announce, clearError, focusHeading, replaceChildren, showError } from './dom.js';
import { renderLogin } from './views/login.js';
import { renderPlugins } from './views/plugins.js';
import { renderPlugin } from './views/plugin.js';
import { renderSync } from './views/sync.js';

/** How often a view's data is fetched again while the tab is visible. */
const POLL_MS = 5000;
/** The user name shown in the bar (not a secret; the session itself is an HttpOnly cookie). */
const USER_KEY = 'nebula.username';

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
let current = { destroy() {} };
let loggedIn = false;

/**
 * Runs `tick` now and every POLL_MS while the tab is visible; a tick never overlaps the last.
 * @param {() => Promise<void>} tick
 * @returns {() => void} stops the polling
 */
function poll(tick) {
  let timer = 0;
  let stopped = false;
  let running = false;
  const run = async () => {
    clearTimeout(timer);
    if (stopped || running) return;
    if (!document.hidden) {
      running = true;
      try {
        await tick();
      } finally {
        running = false;
      }
    }
    if (!stopped) timer = setTimeout(run, POLL_MS);
  };
  // Paused while the tab is hidden; fresh data at once when it is shown again.
  const onVisibility = () => { if (!document.hidden) run(); };
  document.addEventListener('visibilitychange', onVisibility);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisibility);
  };
}

/** What every view is given. */
const ctx = {
  api,
  poll,
  POLL_MS,
  /** Handles a failed request: an ended session goes back to the login form. */
  fail(error) {
    if (error && error.sessionEnded) {
      // Several requests of a view may fail together: the first one shows the form, and the
      // others must not show it again over what the user started typing.
      if (loggedIn) sessionEnded('Your session has ended. Log in again.');
      return;
    }
    showError(error instanceof Error ? error.message : String(error));
  },
  /** Called by the login view. */
  loggedIn(username) {
    sessionStorage.setItem(USER_KEY, username);
    setSession(true, username);
    announce(`Logged in as ${username}.`);
    route();
  },
};

function setSession(isLoggedIn, username) {
  loggedIn = isLoggedIn;
  const session = document.getElementById('session');
  const whoami = document.getElementById('whoami');
  if (session) session.hidden = !loggedIn;
  if (whoami) whoami.textContent = username ? `Signed in as ${username}` : 'Signed in';
}

function show(render, ...args) {
  current.destroy();
  clearError();
  replaceChildren(main);
  current = render(main, ctx, ...args) ?? { destroy() {} };
  document.title = `${current.title ?? 'Plugins'} · Nebula Core`;
  focusHeading(current.heading);
}

function sessionEnded(message) {
  sessionStorage.removeItem(USER_KEY);
  setSession(false, '');
  show(renderLogin, { message });
}

/** Shows the view the address names. */
function route() {
  if (!loggedIn) return;
  const hash = location.hash || '#/';
  const match = hash.match(/^#\/plugins\/([^/]+)(\/sync)?$/);
  if (match) {
    let name = match[1];
    try {
      name = decodeURIComponent(name);
    } catch {
      // A malformed escape: the name as written (the server will say it does not exist).
    }
    show(match[2] ? renderSync : renderPlugin, name);
  } else {
    show(renderPlugins);
  }
}

async function logout(event) {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await api.logout();
    sessionEnded('');
    announce('Logged out.');
  } catch (e) {
    ctx.fail(e);
  } finally {
    button.disabled = false;
  }
}

async function start() {
  document.getElementById('logout')?.addEventListener('click', logout);
  document.getElementById('alert-close')?.addEventListener('click', clearError);
  window.addEventListener('hashchange', route);
  // The cookie is HttpOnly: the page learns whether it has a session by asking.
  try {
    await api.plugins();
    setSession(true, sessionStorage.getItem(USER_KEY) ?? '');
    route();
  } catch (e) {
    if (e && e.sessionEnded) sessionEnded('');
    else {
      show(renderLogin, { message: '' });
      ctx.fail(e);
    }
  }
}

start();
