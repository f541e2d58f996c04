// The login form: a staff user of system.db, the `nebula_session` cookie (HttpOnly: the page
// never sees it).

import { el } from '../dom.js';

/**
 * @param {HTMLElement} main
 * @param {object} ctx see app.js
 * @param {{message?: string}} [options] a reason shown above the form (session ended)
 */
export function renderLogin(main, ctx, { message = '' } = {}) {
  const heading = el('h1', { id: 'login-heading', text: 'Log in' });
  const username = el('input', {
    id: 'login-username', name: 'username', type: 'text', autocomplete: 'username',
    required: true, autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'login-error',
  });
  const password = el('input', {
    id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password',
    required: true, 'aria-describedby': 'login-error',
  });
  const error = el('p', { id: 'login-error', class: 'field-error', role: 'alert', hidden: !message, text: message });
  const submit = el('button', { type: 'submit', id: 'login-submit', class: 'button button-primary', text: 'Log in' });

  const form = el('form', { id: 'login-form', novalidate: true },
    el('label', { for: 'login-username', text: 'Username' }), username,
    el('label', { for: 'login-password', text: 'Password' }), password,
    error,
    submit);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      fail('Enter your username and password.', username.value.trim() ? password : username);
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    submit.textContent = 'Logging in…';
    try {
      const answer = await ctx.api.login(username.value.trim(), password.value);
      ctx.loggedIn(answer && answer.username ? answer.username : username.value.trim());
    } catch (e) {
      const text = e && e.status === 401
        ? 'Wrong username or password (or the user is not staff).'
        : (e instanceof Error ? e.message : String(e));
      password.value = '';
      fail(text, password);
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
      submit.textContent = 'Log in';
    }
  });

  function fail(text, focus) {
    error.textContent = text;
    error.hidden = false;
    username.setAttribute('aria-invalid', 'true');
    password.setAttribute('aria-invalid', 'true');
    focus.focus();
  }

  main.append(el('section', { class: 'card login-card', 'aria-labelledby': 'login-heading' },
    heading,
    el('p', { class: 'hint' }, 'Staff users of ', el('code', { text: 'system.db' }), '. An operator creates one with ',
      el('code', { text: 'nebula-server create-user NAME --staff' }), '.'),
    form));
  return { heading, title: 'Log in', destroy() {} };
}
