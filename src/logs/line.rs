//! One log line: when, who (the app or the platform), which dyno, and the text.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize};

use super::time::{ParseTimestampError, Rfc3339, parse_rfc3339};

/// Who wrote a line: the app itself (its dynos' output, API events) or the platform about the app. Parses from
/// its name, as [`as_str`](Self::as_str) gives it.
///
/// ```
/// use wasmdyno::{logs::LogLine, logs::Source as LogSource};
///
/// let line = LogLine::platform("web.1", "State changed from starting to up".into());
/// assert_eq!(line.source(), LogSource::Platform);
/// assert_eq!("wasmdyno".parse::<LogSource>(), Ok(LogSource::Platform));
/// assert_eq!(LogSource::App.to_string(), "app");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// `app[web.1]`, `app[api]`.
    #[serde(rename = "app")]
    App,
    /// `wasmdyno[web.1]`, `wasmdyno[router]`.
    #[serde(rename = "wasmdyno")]
    Platform,
}

impl Source {
    /// The name printed in a line: `app` or `wasmdyno`.
    ///
    /// ```
    /// use wasmdyno::logs::Source as LogSource;
    ///
    /// assert_eq!(LogSource::App.as_str(), "app");
    /// assert_eq!(LogSource::Platform.as_str(), "wasmdyno");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Source::App => "app",
            Source::Platform => "wasmdyno",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A source name that is neither `app` nor `wasmdyno`, from parsing a [`Source`](crate::logs::Source).
///
/// ```
/// let err = "kernel".parse::<wasmdyno::logs::Source>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown log source "kernel" (app or wasmdyno)"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log source {0:?} (app or wasmdyno)")]
pub struct UnknownSource(String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(name: &str) -> Result<Source, UnknownSource> {
        match name {
            "app" => Ok(Source::App),
            "wasmdyno" => Ok(Source::Platform),
            other => Err(UnknownSource(other.to_owned())),
        }
    }
}

/// One line of an app's log stream.
///
/// Displays as `heroku logs` prints it, `<timestamp> <source>[<dyno>]: <text>`, and serializes as
/// `{"timestamp","source","dyno","text"}`. The dyno and text are shared (`Arc<str>`), so the copies the stream keeps
/// in its history and hands to each reader cost no allocation.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use wasmdyno::{logs::LogLine, logs::Source as LogSource};
///
/// let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let line = LogLine::new(at, LogSource::App, "web.1", "hello");
/// assert_eq!((line.source(), line.dyno(), line.text()), (LogSource::App, "web.1", "hello"));
/// assert!(line.to_string().ends_with(" app[web.1]: hello"), "{line}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "WireLine")]
pub struct LogLine {
    timestamp: SystemTime,
    source: Source,
    dyno: Arc<str>,
    text: Arc<str>,
}

impl LogLine {
    /// A line with every part given.
    ///
    /// ```
    /// let line = wasmdyno::logs::LogLine::new(std::time::SystemTime::now(), wasmdyno::logs::Source::Platform, "router", "at=info");
    /// assert_eq!(line.dyno(), "router");
    /// ```
    pub fn new(
        timestamp: SystemTime,
        source: Source,
        dyno: impl Into<Arc<str>>,
        text: impl Into<Arc<str>>,
    ) -> LogLine {
        LogLine {
            timestamp,
            source,
            dyno: dyno.into(),
            text: text.into(),
        }
    }

    /// A line from the app, stamped now: `app[web.1]: ...`, `app[api]: Release v3 created`.
    ///
    /// ```
    /// let line = wasmdyno::logs::LogLine::app("api", "Release v3 created".into());
    /// assert_eq!(line.source(), wasmdyno::logs::Source::App);
    /// ```
    pub fn app(dyno: &str, text: String) -> LogLine {
        LogLine::new(SystemTime::now(), Source::App, dyno, text)
    }

    /// A line from the platform about the app, stamped now: `wasmdyno[web.1]: State changed from starting to up`.
    ///
    /// ```
    /// let line = wasmdyno::logs::LogLine::platform("web.1", "State changed from starting to up".into());
    /// assert!(line.to_string().contains("wasmdyno[web.1]: State changed"));
    /// ```
    pub fn platform(dyno: &str, text: String) -> LogLine {
        LogLine::new(SystemTime::now(), Source::Platform, dyno, text)
    }

    /// When the line was written.
    ///
    /// ```
    /// let line = wasmdyno::logs::LogLine::app("web.1", "hi".into());
    /// assert!(line.timestamp() <= std::time::SystemTime::now());
    /// ```
    pub fn timestamp(&self) -> SystemTime {
        self.timestamp
    }

    /// Who wrote it: the app or the platform.
    ///
    /// ```
    /// assert_eq!(wasmdyno::logs::LogLine::platform("router", "at=info".into()).source().as_str(), "wasmdyno");
    /// ```
    pub fn source(&self) -> Source {
        self.source
    }

    /// `web.1`, `run.2`, `release.3`, `api`, `router`...
    ///
    /// ```
    /// assert_eq!(wasmdyno::logs::LogLine::app("run.2", "done".into()).dyno(), "run.2");
    /// ```
    pub fn dyno(&self) -> &str {
        &self.dyno
    }

    /// The text, without a line end.
    ///
    /// ```
    /// assert_eq!(wasmdyno::logs::LogLine::app("web.1", "hi".into()).text(), "hi");
    /// ```
    pub fn text(&self) -> &str {
        &self.text
    }

    /// A line too long for the stream cut into lines of at most `max` bytes of text, on character boundaries, each
    /// with this line's timestamp, source and dyno.
    pub(super) fn parts(&self, max: usize) -> impl Iterator<Item = LogLine> + '_ {
        let mut rest = &*self.text;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // Were `max` under 4 bytes, a wide character would not fit: it then makes a part of its own.
            let cut = match rest.floor_char_boundary(max) {
                0 => rest.ceil_char_boundary(1),
                cut => cut,
            };
            let (part, after) = rest.split_at(cut);
            rest = after;
            Some(LogLine {
                text: part.into(),
                dyno: self.dyno.clone(),
                ..*self
            })
        })
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}[{}]: {}",
            Rfc3339(self.timestamp),
            self.source,
            self.dyno,
            self.text
        )
    }
}

impl Serialize for LogLine {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut line = serializer.serialize_struct("LogLine", 4)?;
        line.serialize_field("timestamp", &Rfc3339(self.timestamp))?;
        line.serialize_field("source", &self.source)?;
        line.serialize_field("dyno", &*self.dyno)?;
        line.serialize_field("text", &*self.text)?;
        line.end()
    }
}

/// The JSON form of a line as read back (a client reading a log session).
#[derive(Deserialize)]
struct WireLine {
    timestamp: String,
    source: Source,
    dyno: String,
    text: String,
}

impl TryFrom<WireLine> for LogLine {
    type Error = ParseTimestampError;

    fn try_from(wire: WireLine) -> Result<LogLine, ParseTimestampError> {
        Ok(LogLine::new(
            parse_rfc3339(&wire.timestamp)?,
            wire.source,
            wire.dyno,
            wire.text,
        ))
    }
}
