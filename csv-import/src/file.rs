//! Reading and parsing the CSV file: one [`Row`] per data line, each valid or not on its own.

use std::io;
use std::path::Path;

use csv::{ReaderBuilder, StringRecord, Trim};
use nebula_plugin_api::{escape_control, validate_username, PluginError, SyncUser};

use crate::Settings;

/// The columns a file may have, in any order, named in its header row. `username` is
/// required; any other column is refused (a misspelled `email` column must not clear every
/// address on the next import).
pub const COLUMNS: [&str; 4] = ["username", "email", "role_tag", "is_active"];

/// One data line of the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Its line number in the file (the header is line 1).
    pub line: u64,
    /// The username as written (trimmed; empty when missing).
    pub username: String,
    /// The user to sync, or why the line is invalid (the text starts with `line N: `).
    pub user: Result<SyncUser, String>,
}

/// Where each known column is.
#[derive(Debug)]
struct Columns {
    username: usize,
    email: Option<usize>,
    role_tag: Option<usize>,
    is_active: Option<usize>,
    width: usize,
}

/// Reads and parses the file off the async workers (the read and the parse both block).
///
/// An unreadable file is [`PluginError::Unavailable`], a header the plugin cannot use
/// [`PluginError::InvalidInput`]; either way nothing has been written. A bad data line is not
/// an error: it is a [`Row`] whose `user` says what is wrong.
pub(crate) async fn load(settings: &Settings) -> Result<Vec<Row>, PluginError> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&settings.path).map_err(|e| unreadable(&settings.path, &e))?;
        parse(&bytes, &settings)
            .map_err(|e| PluginError::invalid(format!("'{}' {e}", settings.path.display())))
    })
    .await
    .map_err(|e| PluginError::internal(format!("reading the CSV file: {e}")))?
}

/// Whether the file can be read now: it exists, is a file, and opens (cheap, for `health`).
pub(crate) async fn check_readable(path: &Path) -> Result<(), PluginError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| unreadable(path, &e))?;
    if !meta.is_file() {
        let e = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
        return Err(unreadable(path, &e));
    }
    tokio::fs::File::open(path)
        .await
        .map_err(|e| unreadable(path, &e))?;
    Ok(())
}

/// The error for a file that cannot be read, naming the setting and, for a relative path,
/// the directory it is relative to.
fn unreadable(path: &Path, e: &io::Error) -> PluginError {
    let relative = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => format!(
            ", relative to the server's working directory {}",
            cwd.display()
        ),
        _ => String::new(),
    };
    PluginError::Unavailable(format!(
        "cannot read '{}' (plugins.settings.csv_import.path{relative}): {e}",
        path.display()
    ))
}

/// Parses the whole file. `Err` only for a header the plugin cannot use (`line 1: …`).
pub(crate) fn parse(bytes: &[u8], settings: &Settings) -> Result<Vec<Row>, String> {
    let mut reader = ReaderBuilder::new()
        .delimiter(settings.delimiter_byte())
        .trim(Trim::All)
        .flexible(true)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| format!("line 1: unreadable header: {e}"))?;
    let columns = columns(header)?;
    let mut rows = Vec::new();
    for record in reader.records() {
        rows.push(match record {
            Ok(record) => {
                let line = line_of(bytes, record.position());
                row(&record, line, &columns, settings)
            }
            Err(e) => {
                let line = line_of(bytes, e.position());
                let error = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
                    _ => e.to_string(),
                };
                Row {
                    line,
                    username: String::new(),
                    user: Err(format!("line {line}: {error}")),
                }
            }
        });
    }
    Ok(rows)
}

/// The line a record starts on. The reader's position is where it began looking for the
/// record, before the blank lines it skips; count those too.
fn line_of(bytes: &[u8], position: Option<&csv::Position>) -> u64 {
    let Some(position) = position else {
        return 0;
    };
    let start = usize::try_from(position.byte()).unwrap_or(usize::MAX);
    let skipped = bytes
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\n' | b'\r'))
        .filter(|b| **b == b'\n')
        .count();
    position.line() + skipped as u64
}

fn columns(header: &StringRecord) -> Result<Columns, String> {
    let expected = COLUMNS.join(", ");
    let mut found: [Option<usize>; 4] = [None; 4];
    for (i, name) in header.iter().enumerate() {
        let known = COLUMNS
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "line 1: unknown column '{}' (expected {expected})",
                    escape_control(name)
                )
            })?;
        if found[known].replace(i).is_some() {
            return Err(format!("line 1: column '{}' appears twice", COLUMNS[known]));
        }
    }
    let [username, email, role_tag, is_active] = found;
    let username = username.ok_or_else(|| {
        format!("line 1: no 'username' column (the header names the columns: {expected})")
    })?;
    Ok(Columns {
        username,
        email,
        role_tag,
        is_active,
        width: header.len(),
    })
}

fn row(record: &StringRecord, line: u64, columns: &Columns, settings: &Settings) -> Row {
    let username = record.get(columns.username).unwrap_or("").to_owned();
    let user = user(record, columns, settings).map_err(|e| format!("line {line}: {e}"));
    Row {
        line,
        username,
        user,
    }
}

fn user(record: &StringRecord, columns: &Columns, settings: &Settings) -> Result<SyncUser, String> {
    if record.len() != columns.width {
        return Err(format!(
            "{} fields, the header has {}",
            record.len(),
            columns.width
        ));
    }
    let field = |column: Option<usize>| column.and_then(|i| record.get(i)).unwrap_or("");
    let username = field(Some(columns.username));
    if username.is_empty() {
        return Err("username is empty".into());
    }
    let username = validate_username(username).map_err(|e| e.to_string())?;
    let is_active = match field(columns.is_active).to_ascii_lowercase().as_str() {
        "" | "true" | "yes" | "1" => true,
        "false" | "no" | "0" => false,
        other => {
            return Err(format!(
                "is_active: expected true or false (or yes/no, 1/0), got '{}'",
                escape_control(other)
            ))
        }
    };
    let role_tag = match field(columns.role_tag) {
        "" => settings.default_role_tag.clone(),
        tag => tag.to_owned(),
    };
    let email = Some(field(columns.email))
        .filter(|e| !e.is_empty())
        .map(str::to_owned);
    Ok(SyncUser {
        username,
        db_name: settings.db_name.clone(),
        role_tag,
        email,
        is_active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(delimiter: char) -> Settings {
        Settings {
            path: "users.csv".into(),
            db_name: "acme.db".into(),
            default_role_tag: "staff_member".into(),
            delimiter,
        }
    }

    fn errors(rows: &[Row]) -> Vec<&str> {
        rows.iter()
            .filter_map(|r| r.user.as_ref().err().map(String::as_str))
            .collect()
    }

    #[test]
    fn columns_in_any_order_defaults_and_line_numbers() {
        let text = "Is_Active;role_tag;username;email\n\
                    ;;ann;ann@example.com\n\
                    \n\
                    no; Ops ; bob ;\n";
        let rows = parse(text.as_bytes(), &settings(';')).unwrap();
        assert_eq!(rows.len(), 2);
        let ann = rows[0].user.as_ref().unwrap();
        assert_eq!((rows[0].line, ann.is_active), (2, true));
        assert_eq!(ann.role_tag, "staff_member");
        assert_eq!(ann.email.as_deref(), Some("ann@example.com"));
        assert_eq!(ann.db_name, "acme.db");
        let bob = rows[1].user.as_ref().unwrap();
        assert_eq!((rows[1].line, bob.username.as_str()), (4, "bob"));
        assert_eq!(
            (bob.is_active, bob.role_tag.as_str(), &bob.email),
            (false, "Ops", &None)
        );
    }

    #[test]
    fn bad_lines_are_rows_naming_their_line() {
        let text =
            "username,is_active\nann,true\n,true\ncid,maybe\ndan\n\"eve\nsmith\",1\n\r\n\nfay,0\n";
        let rows = parse(text.as_bytes(), &settings(',')).unwrap();
        assert_eq!(
            errors(&rows),
            [
                "line 3: username is empty",
                "line 4: is_active: expected true or false (or yes/no, 1/0), got 'maybe'",
                "line 5: 1 fields, the header has 2",
                "line 6: username 'eve\\nsmith': expected 1 to 150 printable characters",
            ]
        );
        assert_eq!(rows[2].username, "cid");
        // A quoted field may span lines, and blank lines are skipped: line numbers count both.
        assert_eq!((rows[5].line, rows[5].username.as_str()), (10, "fay"));
        assert!(rows[5].user.is_ok());
    }

    #[test]
    fn invalid_utf8_is_one_bad_row() {
        let rows = parse(b"username\nann\n\xff\xfe\nbob\n", &settings(',')).unwrap();
        assert_eq!(errors(&rows), ["line 3: not valid UTF-8"]);
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn headers_it_cannot_use_are_refused() {
        for (text, error) in [
            ("", "line 1: no 'username' column"),
            ("name,email\n", "line 1: unknown column 'name'"),
            ("username,emial\n", "line 1: unknown column 'emial'"),
            (
                "username,USERNAME\n",
                "line 1: column 'username' appears twice",
            ),
        ] {
            let err = parse(text.as_bytes(), &settings(',')).unwrap_err();
            assert!(err.starts_with(error), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_column() {
        let rows = parse("\u{feff}username,email\nann,\n".as_bytes(), &settings(',')).unwrap();
        assert_eq!(rows[0].user.as_ref().unwrap().username, "ann");
    }
}
