//! [`LineWriter`]: a dyno's raw stdout and stderr bytes cut into log lines.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::{AppStream, LogLine, Logplex, MAX_LINE_BYTES, Source};

/// Turns one dyno's output into `app[<dyno>]` lines of its app's stream.
///
/// Bytes are cut on `\n` (a `\r` before it is dropped, so CRLF output reads the same); a last line without its
/// newline waits for the rest, but never grows past [`MAX_LINE_BYTES`]: beyond that it is published as it stands
/// and the remainder starts a new line. Text that is not UTF-8 is published with replacement characters. Dropping
/// the writer [flushes](LineWriter::flush) it.
///
/// The writer is bound to the app's stream as it is when the writer is made: once the app is
/// [removed](Logplex::remove_app), what the writer still writes goes nowhere, rather than into a new app that reuses
/// the name.
pub struct LineWriter {
    stream: Arc<AppStream>,
    dyno: Arc<str>,
    /// The start of a line whose newline has not come yet; at most [`MAX_LINE_BYTES`] long between writes.
    partial: Vec<u8>,
}

impl LineWriter {
    pub fn new(logplex: Logplex, app: &str, dyno: &str) -> LineWriter {
        LineWriter {
            stream: logplex.stream(app),
            dyno: dyno.into(),
            partial: Vec::new(),
        }
    }

    /// Publishes each complete line of `bytes` (with what was left over from the last write before the first) and
    /// keeps the unfinished end for the next write.
    pub fn write(&mut self, bytes: &[u8]) {
        // One clock reading per write: the lines of one write arrived together.
        let now = SystemTime::now();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let line = &rest[..end];
            rest = &rest[end + 1..];
            if self.partial.is_empty() {
                self.publish(strip_cr(line), now);
            } else {
                self.partial.extend_from_slice(line);
                self.publish(strip_cr(&self.partial), now);
                self.partial.clear();
            }
        }
        // The unfinished end: whenever it would pass the limit, a full line's worth goes out as a line of its own.
        loop {
            let room = MAX_LINE_BYTES - self.partial.len();
            if rest.len() <= room {
                self.partial.extend_from_slice(rest);
                break;
            }
            self.partial.extend_from_slice(&rest[..room]);
            rest = &rest[room..];
            let cut = utf8_floor(&self.partial);
            self.publish(&self.partial[..cut], now);
            // What is left (the start of a character cut by the limit) is at most 3 bytes.
            self.partial.drain(..cut);
        }
    }

    /// Publishes the unfinished last line, if there is one (when the dyno exits).
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            self.publish(strip_cr(&self.partial), SystemTime::now());
            self.partial.clear();
        }
    }

    fn publish(&self, bytes: &[u8], at: SystemTime) {
        // Valid UTF-8 is borrowed, not copied: the `Arc<str>` is the line's only allocation.
        let text: Arc<str> = String::from_utf8_lossy(bytes).as_ref().into();
        self.stream
            .publish(LogLine::new(at, Source::App, self.dyno.clone(), text));
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

impl fmt::Debug for LineWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineWriter")
            .field("dyno", &self.dyno)
            .field("partial_bytes", &self.partial.len())
            .finish_non_exhaustive()
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where to cut `bytes` (which hold exactly [`MAX_LINE_BYTES`]) so as not to split a UTF-8 character: before the
/// last character if it may continue past the end. Bytes that are not UTF-8 anyway are cut at the limit.
fn utf8_floor(bytes: &[u8]) -> usize {
    let end = bytes.len();
    // A character is at most 4 bytes: its first byte is among the last 4.
    for start in (end.saturating_sub(4)..end).rev() {
        let byte = bytes[start];
        if byte & 0b1100_0000 != 0b1000_0000 {
            let width = match byte {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            return if start + width > end && start > 0 {
                start
            } else {
                end
            };
        }
    }
    end
}
