// The users editor's parser: a JSON array of user objects, or CSV with a header row, into the
// `users` array of the sync request (docs/HTTP_API.md, "The sync request"). The server stays
// the judge of every rule; this catches what can be said before sending, with a line number.

/** The columns a CSV header may name (the user object's fields). */
export const COLUMNS = ['username', 'db_name', 'role_tag', 'email', 'is_active'];

/** A parse error the editor shows as is. */
export class ParseError extends Error {}

/**
 * Parses the editor's text. Empty text is an empty list: plugins that read their users from
 * elsewhere (such as `ldap_sync`) are run with no users in the request.
 * @param {string} text
 * @returns {{format: 'empty'|'json'|'csv', users: object[]}}
 */
export function parseUsers(text) {
  // A byte order mark, as spreadsheet programs write at the start of a CSV file.
  text = text.replace(/^\uFEFF/, '');
  const trimmed = text.trim();
  if (trimmed === '') return { format: 'empty', users: [] };
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) return { format: 'json', users: parseJson(trimmed) };
  return { format: 'csv', users: parseCsv(text) };
}

function parseJson(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ParseError(`Not valid JSON: ${e instanceof Error ? e.message : e}`);
  }
  // A whole sync body pasted in is accepted for its users.
  if (value && typeof value === 'object' && !Array.isArray(value) && Array.isArray(value.users)) {
    value = value.users;
  }
  if (!Array.isArray(value)) {
    throw new ParseError('JSON must be an array of user objects, such as [{"username": "jane.roe", "db_name": "acme"}].');
  }
  value.forEach((user, i) => {
    if (!user || typeof user !== 'object' || Array.isArray(user)) {
      throw new ParseError(`User ${i + 1}: expected an object with at least "username".`);
    }
    if (typeof user.username !== 'string' || user.username.trim() === '') {
      throw new ParseError(`User ${i + 1}: "username" is required and must be a non-empty string.`);
    }
    if ('is_active' in user && typeof user.is_active !== 'boolean') {
      throw new ParseError(`User ${i + 1}: "is_active" must be true or false.`);
    }
  });
  return value;
}

/** Splits CSV text into rows of fields (RFC 4180: quotes, doubled quotes, CRLF or LF). */
export function csvRows(text) {
  const rows = [];
  let fields = [];
  let field = '';
  let quoted = false;
  let line = 1;
  let rowLine = 1;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else { if (c === '\n') line += 1; field += c; }
    } else if (c === '"' && field === '') {
      quoted = true;
    } else if (c === ',') {
      fields.push(field); field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      fields.push(field); field = '';
      rows.push({ line: rowLine, fields });
      fields = [];
      line += 1;
      rowLine = line;
    } else {
      field += c;
    }
  }
  if (quoted) throw new ParseError(`Line ${rowLine}: a quoted field is not closed.`);
  fields.push(field);
  rows.push({ line: rowLine, fields });
  // Blank lines are skipped.
  return rows.filter((r) => !(r.fields.length === 1 && r.fields[0].trim() === ''));
}

function parseCsv(text) {
  const rows = csvRows(text);
  const [header, ...records] = rows;
  const columns = header.fields.map((f) => f.trim().toLowerCase());
  columns.forEach((name) => {
    if (!COLUMNS.includes(name)) {
      throw new ParseError(`Line ${header.line}: unknown column "${name}" in the header; known columns: ${COLUMNS.join(', ')}.`);
    }
  });
  if (!columns.includes('username')) {
    throw new ParseError(`Line ${header.line}: the header row must name a "username" column (for example: username,db_name,role_tag,email).`);
  }
  if (new Set(columns).size !== columns.length) {
    throw new ParseError(`Line ${header.line}: a column is named twice.`);
  }
  return records.map(({ line, fields }) => {
    if (fields.length !== columns.length) {
      throw new ParseError(`Line ${line}: ${fields.length} field(s), but the header has ${columns.length}.`);
    }
    const user = {};
    columns.forEach((name, i) => {
      const value = fields[i].trim();
      if (value === '' && name !== 'username') return; // the server's default
      if (name === 'is_active') {
        const v = value.toLowerCase();
        if (['true', '1', 'yes'].includes(v)) user.is_active = true;
        else if (['false', '0', 'no'].includes(v)) user.is_active = false;
        else throw new ParseError(`Line ${line}: is_active must be true or false, got "${value}".`);
      } else {
        user[name] = value;
      }
    });
    if (!user.username) throw new ParseError(`Line ${line}: username is empty.`);
    return user;
  });
}
