//! Log lines as Logplex sends them to drains: RFC 5424 syslog messages with octet-counting framing (RFC 6587),
//! `<LEN> <PRI>1 <TIMESTAMP> <HOSTNAME> <APP-NAME> <PROCID> - <MSG>`, e.g.
//! `63 <190>1 2026-11-23T12:00:00.123456+00:00 d.1234 app web.1 - Hello` (`LEN` counts the bytes after its space).
//!
//! APP-NAME is the line's source (`app` or `wasmdyno`), PROCID its dyno; HOSTNAME is the drain's token on syslog
//! drains and `host` on HTTP drains, as Logplex does. There is no MSGID and no structured data (`-`).

use std::borrow::Cow;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::logs::{LOGPLEX_DYNO, LogLine, Rfc3339, Source};

/// The PRI of a line (facility × 8 + severity), from its source and dyno, with Logplex's values:
///
/// | line | facility.severity | PRI |
/// |---|---|---|
/// | `app[web.1]`, any dyno's output | local7.info | 190 |
/// | `app[api]` (releases, scaling) | user.notice | 13 |
/// | `wasmdyno[router]` | local3.info | 158 |
/// | `wasmdyno[logplex]` (L10) | local5.warning | 172 |
/// | `wasmdyno[web.1]` (state changes, errors) | syslog.notice | 45 |
///
/// A dyno's stdout and stderr are one stream here (as on Heroku), so they share a PRI.
pub fn priority(line: &LogLine) -> u8 {
    match (line.source(), line.dyno()) {
        (Source::App, "api") => 13,
        (Source::App, _) => 190,
        (Source::Platform, "router") => 158,
        (Source::Platform, LOGPLEX_DYNO) => 172,
        (Source::Platform, _) => 45,
    }
}

/// Appends frames to a buffer, reusing the formatted timestamp from one line to the next when they fall in the
/// same second (a flood's lines mostly do): formatting the date is most of the work of a frame.
#[derive(Debug)]
pub struct Encoder {
    hostname: Box<str>,
    /// The unix second `stamp` was formatted for, or `None`.
    second: Option<u64>,
    stamp: Vec<u8>,
}

/// Where the six digits of the microseconds are in an RFC 3339 timestamp of a four-digit year.
const MICROS: std::ops::Range<usize> = 20..26;

impl Encoder {
    /// An encoder writing `hostname` into every frame (a drain token, or `host`).
    pub fn new(hostname: &str) -> Encoder {
        Encoder {
            hostname: sanitize(hostname).into(),
            second: None,
            stamp: Vec::with_capacity(40),
        }
    }

    /// Appends `line` as one octet-counted frame.
    pub fn encode(&mut self, out: &mut Vec<u8>, line: &LogLine) {
        self.timestamp(line.timestamp());
        let priority = priority(line);
        let app_name = line.source().as_str();
        let dyno = line.dyno();
        let dyno: Cow<'_, str> = if is_header_field(dyno) {
            Cow::Borrowed(dyno)
        } else {
            Cow::Owned(sanitize(dyno))
        };
        let text = line.text().as_bytes();
        // `<PRI>1 ` + stamp + ` ` + host + ` ` + app + ` ` + procid + ` - ` + text
        let len = 1
            + digits(u64::from(priority))
            + 3
            + self.stamp.len()
            + 1
            + self.hostname.len()
            + 1
            + app_name.len()
            + 1
            + dyno.len()
            + 3
            + text.len();
        out.reserve(len + 8);
        write!(out, "{len} <{priority}>1 ").expect("writing to a Vec");
        out.extend_from_slice(&self.stamp);
        out.push(b' ');
        out.extend_from_slice(self.hostname.as_bytes());
        out.push(b' ');
        out.extend_from_slice(app_name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(dyno.as_bytes());
        out.extend_from_slice(b" - ");
        out.extend_from_slice(text);
    }

    fn timestamp(&mut self, at: SystemTime) {
        let Ok(since) = at.duration_since(UNIX_EPOCH) else {
            self.second = None;
            self.stamp.clear();
            write!(self.stamp, "{}", Rfc3339(at)).expect("writing to a Vec");
            return;
        };
        let second = since.as_secs();
        if self.second == Some(second) {
            let micros = since.subsec_micros();
            for (i, place) in self.stamp[MICROS].iter_mut().rev().enumerate() {
                *place = b'0' + (micros / 10u32.pow(i as u32) % 10) as u8;
            }
            return;
        }
        self.stamp.clear();
        write!(self.stamp, "{}", Rfc3339(at)).expect("writing to a Vec");
        // Only the common form (a four-digit year, `YYYY-MM-DDTHH:MM:SS.uuuuuu+00:00`) is patched in place.
        self.second = (self.stamp.len() == 32).then_some(second);
    }
}

fn digits(mut n: u64) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

/// RFC 5424 header fields are 1 to 128 printable ASCII characters without spaces.
fn is_header_field(field: &str) -> bool {
    !field.is_empty() && field.len() <= 128 && field.bytes().all(|b| b.is_ascii_graphic())
}

/// A header field made valid: other characters become `_`; empty is `-`.
fn sanitize(field: &str) -> String {
    if field.is_empty() {
        return "-".into();
    }
    field
        .chars()
        .take(128)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// Reads octet-counted frames back: the messages of `bytes`, or `None` if a frame is malformed or cut short.
#[cfg(test)]
pub fn parse_frames(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut messages = Vec::new();
    while !bytes.is_empty() {
        let space = bytes.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&bytes[..space]).ok()?.parse().ok()?;
        let message = bytes.get(space + 1..space + 1 + len)?;
        messages.push(message);
        bytes = &bytes[space + 1 + len..];
    }
    Some(messages)
}
