//! The last lines each plugin wrote through `ctx.log`, in a bounded ring per plugin.

use std::collections::{HashMap, VecDeque};

use nebula_plugin_api::LogLevel;
use parking_lot::Mutex;
use serde::Serialize;

use crate::storage::unix_now;

/// Lines kept per plugin (also the largest `tail`).
pub const MAX_LOG_LINES: usize = 2000;
/// Longest message kept; longer ones are cut (on a character boundary).
const MAX_MESSAGE_BYTES: usize = 4096;

/// One line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// Float Unix seconds.
    pub ts: f64,
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The text.
    pub message: String,
}

/// Rings of recent log lines, by plugin name.
#[derive(Debug, Default)]
pub struct PluginLogs {
    rings: Mutex<HashMap<String, VecDeque<LogLine>>>,
}

impl PluginLogs {
    /// Appends a line, dropping the oldest past [`MAX_LOG_LINES`].
    pub fn push(&self, plugin: &str, level: LogLevel, message: &str) {
        let mut message = message.to_owned();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let line = LogLine {
            ts: unix_now(),
            level: level.as_str(),
            message,
        };
        let mut rings = self.rings.lock();
        let ring = rings.entry(plugin.to_owned()).or_default();
        if ring.len() == MAX_LOG_LINES {
            ring.pop_front();
        }
        ring.push_back(line);
    }

    /// The last `n` lines of `plugin`, oldest first.
    pub fn tail(&self, plugin: &str, n: usize) -> Vec<LogLine> {
        let rings = self.rings.lock();
        match rings.get(plugin) {
            Some(ring) => ring
                .iter()
                .skip(ring.len().saturating_sub(n))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_bounded_and_tails_are_the_newest_lines() {
        let logs = PluginLogs::default();
        for i in 0..(MAX_LOG_LINES + 5) {
            logs.push("p", LogLevel::Info, &format!("line {i}"));
        }
        let tail = logs.tail("p", 3);
        let texts: Vec<&str> = tail.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(texts, ["line 2002", "line 2003", "line 2004"]);
        assert_eq!(logs.tail("p", 10_000).len(), MAX_LOG_LINES);
        assert!(logs.tail("other", 5).is_empty());
        logs.push("q", LogLevel::Warn, &"é".repeat(5000));
        let long = &logs.tail("q", 1)[0];
        assert!(long.message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
        assert_eq!(long.level, "warn");
    }
}
