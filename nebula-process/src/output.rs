//! The child's stdout and stderr, line by line, into the plugin's log.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use nebula_plugin_api::{LogLevel, PluginContext};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;

/// Longest line kept; the rest of a longer line is dropped (and counted).
pub(crate) const MAX_LINE_BYTES: usize = 4096;

/// The last non-empty line a stream carried (for "exited before it was ready: <line>").
pub(crate) type LastLine = Arc<Mutex<Option<String>>>;

/// Starts a task that reads `fd` to its end and writes each line to `ctx.log` at `level`
/// (keeping the last one in `last`). It reads continuously, whatever the log does, so the
/// child never blocks on a full pipe. Must be called within a tokio runtime.
pub(crate) fn pump(
    fd: OwnedFd,
    level: LogLevel,
    ctx: PluginContext,
    last: Option<LastLine>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let reader = pipe::Receiver::from_owned_fd(fd)?;
    Ok(tokio::spawn(read_lines(reader, move |line| {
        if let Some(last) = &last {
            if !line.trim().is_empty() {
                *last.lock() = Some(line.clone());
            }
        }
        ctx.log(level, line);
    })))
}

/// Reads `reader` to its end, calling `emit` with each line (without its `\n` or `\r\n`;
/// lines longer than [`MAX_LINE_BYTES`] cut, with a note; invalid UTF-8 replaced).
async fn read_lines<R, F>(mut reader: R, mut emit: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(String),
{
    let mut chunk = vec![0u8; 16 * 1024];
    let mut line = LineBuffer::default();
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            line.push(&rest[..end]);
            emit(line.take());
            rest = &rest[end + 1..];
        }
        line.push(rest);
    }
    if !line.is_empty() {
        emit(line.take());
    }
}

/// One line being read: at most [`MAX_LINE_BYTES`] kept, the rest counted.
#[derive(Default)]
struct LineBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl LineBuffer {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_LINE_BYTES - self.bytes.len();
        let kept = data.len().min(room);
        self.bytes.extend_from_slice(&data[..kept]);
        self.dropped += data.len() - kept;
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }

    fn take(&mut self) -> String {
        let mut bytes = std::mem::take(&mut self.bytes);
        let dropped = std::mem::take(&mut self.dropped);
        if dropped == 0 {
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        // Cut on a character boundary: drop a sequence the cut left incomplete.
        if let Err(e) = std::str::from_utf8(&bytes) {
            if e.error_len().is_none() {
                let incomplete = bytes.len() - e.valid_up_to();
                bytes.truncate(e.valid_up_to());
                return format!(
                    "{}…[line cut: {} more bytes]",
                    String::from_utf8_lossy(&bytes),
                    dropped + incomplete
                );
            }
        }
        format!(
            "{}…[line cut: {dropped} more bytes]",
            String::from_utf8_lossy(&bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, |l| out.push(l)).await;
        out
    }

    #[tokio::test]
    async fn lines_are_split_trimmed_and_bounded() {
        assert_eq!(lines(b"a\r\nb\n\nlast").await, ["a", "b", "", "last"]);
        let long = format!("{}\nnext\n", "x".repeat(10_000));
        let out = lines(long.as_bytes()).await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            format!(
                "{}…[line cut: {} more bytes]",
                "x".repeat(4096),
                10_000 - 4096
            )
        );
        assert_eq!(out[1], "next");
        // A cut inside a multi-byte character drops the partial character.
        let accents = format!("a{}\n", "é".repeat(3000));
        let out = lines(accents.as_bytes()).await;
        assert_eq!(
            out[0],
            format!(
                "a{}…[line cut: {} more bytes]",
                "é".repeat(2047),
                6001 - 4095
            )
        );
    }
}
