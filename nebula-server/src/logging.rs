//! The process log: `tracing` to standard error, one event per line, always: readable text
//! or JSON (`log.format`), filtered by `log.filter` or `RUST_LOG`.

use std::io::{self, IsTerminal, Write};

use nebula_core::config::{LogConfig, LogFormat};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber: the filter of `RUST_LOG` when set, else `log.filter`; standard
/// error; every event kept on one line ([`OneLineWriter`]). Text has colours only on a
/// terminal (a file or a pipe gets none); JSON is one object per line with the event's fields
/// at the top level and the request's (`request_id`) under `span`. A filter that does not
/// parse is an error naming where it came from.
pub fn init_tracing(config: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG={env:?}: {e}"))?
        }
        _ => EnvFilter::try_new(&config.filter)
            .map_err(|e| format!("log.filter = {:?}: {e}", config.filter))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLineWriter(io::stderr));
    // A second call (tests that start several servers in one process) keeps the first.
    let _ = match config.format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

/// Wraps a writer so that a formatted event can never span several lines: every control
/// character inside it (a newline or carriage return quoted from a request, a plugin's error
/// text, a peer's status message) is written escaped; only the event's final newline, tabs
/// and the escape character of the formatter's own colours pass as they are.
///
/// This is the net under the sources that already escape what they echo
/// ([`nebula_plugin_api::escape_control`]): no log line can be forged, whatever the source.
#[derive(Debug, Clone, Copy)]
pub struct OneLineWriter<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLineWriter<M> {
    type Writer = OneLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLine(self.0.make_writer())
    }
}

/// The writer [`OneLineWriter`] makes.
#[derive(Debug)]
pub struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    /// The formatter hands over one whole event per call.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|&b| must_escape(b)) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if must_escape(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        if body.len() < buf.len() {
            out.push(b'\n');
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// ASCII control bytes other than tab and ESC (multi-byte UTF-8 never contains them).
fn must_escape(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != 0x1b) || b == 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(text: &str) -> String {
        let mut w = OneLine(Vec::new());
        w.write_all(text.as_bytes()).unwrap();
        String::from_utf8(w.0).unwrap()
    }

    #[test]
    fn an_event_stays_on_one_line() {
        assert_eq!(through("plain line\n"), "plain line\n");
        assert_eq!(
            through("WARN user 'x' failed: invalid db_name 'a\nINFO forged\r'\n"),
            "WARN user 'x' failed: invalid db_name 'a\\nINFO forged\\r'\n"
        );
        assert_eq!(through("bell\u{7}\u{0}é\n"), "bell\\x07\\x00é\n");
        // The formatter's own colours and tabs pass.
        assert_eq!(
            through("\u{1b}[32mINFO\u{1b}[0m\tx\n"),
            "\u{1b}[32mINFO\u{1b}[0m\tx\n"
        );
        assert_eq!(through("no newline at the end"), "no newline at the end");
    }

    #[test]
    fn a_real_subscriber_writes_one_line_per_event() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Shared::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(OneLineWriter(move || writer.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(error = "bad\ninput", "first\nINFO forged line");
            tracing::info!("second");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("first\\nINFO forged line"), "{text}");
        assert!(lines[0].contains("bad\\ninput"), "{text}");
    }
}
