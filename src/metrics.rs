//! App metrics, measured where they happen: the router records every request it answers (status, response time,
//! H code) per app and process type, in one-minute buckets kept for a day, as Heroku Metrics shows them.
//!
//! Memory is bounded whatever the traffic: the minute being filled keeps a histogram of response times
//! ([`hdrhistogram`], 2 significant digits, 1 µs to 1 hour); when the minute ends only its summary stays (counts by
//! status class, p50/p95/p99/max, error codes), at most [`MINUTES_KEPT`] of them per series, and at most
//! [`MAX_CODES`] distinct codes a minute. Series are per app and process type, for at most [`MAX_SERIES`] of them
//! in all; requests beyond are counted in no series.

use crate::fastmap::FastMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Summaries of closed minutes kept per series: 24 hours.
pub const MINUTES_KEPT: usize = 24 * 60;
/// Series (app and process type) tracked at once.
pub const MAX_SERIES: usize = 10_000;
/// Distinct error codes counted in one minute of one series.
pub const MAX_CODES: usize = 32;

/// The metrics of every app. Cheap to clone: clones share the series.
///
/// ```
/// use std::time::Duration;
/// let metrics = wasmdyno::metrics::Metrics::new();
/// metrics.request("hello", "web", 200, None, Duration::from_millis(3), 1_700_000_000);
/// metrics.request("hello", "web", 503, Some("H12"), Duration::from_secs(30), 1_700_000_001);
/// let series = metrics.app("hello", 1_700_000_030);
/// assert_eq!(series[0].process_type, "web");
/// assert_eq!(series[0].totals.requests, [0, 1, 0, 0, 1]);
/// assert_eq!(series[0].minutes[0].errors["H12"], 1);
/// ```
#[derive(Clone, Default)]
pub struct Metrics {
    /// App → process type → series.
    series: Arc<Mutex<FastMap<String, FastMap<String, Series>>>>,
}

/// One process type of one app: what it served, minute by minute, newest first, and since the server started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeMetrics {
    /// `web`, or `router` for requests no dyno took.
    pub process_type: String,
    /// Newest first; the first may be the minute still being filled.
    pub minutes: Vec<Minute>,
    /// Since the server started.
    pub totals: Totals,
}

/// One minute of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    /// Unix seconds at the start of the minute.
    pub start: i64,
    /// Requests by status class: 1xx, 2xx, 3xx, 4xx, 5xx (H27's 499 is a 4xx).
    pub requests: [u64; 5],
    /// The median response time, in milliseconds.
    pub p50_ms: f64,
    /// The 95th percentile response time, in milliseconds.
    pub p95_ms: f64,
    /// The 99th percentile response time, in milliseconds.
    pub p99_ms: f64,
    /// The slowest response, in milliseconds.
    pub max_ms: f64,
    /// Router error codes (H12, H13, ...) and how often.
    pub errors: BTreeMap<String, u64>,
}

/// Counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Requests by status class, as in [`Minute::requests`].
    pub requests: [u64; 5],
    /// Router error codes.
    pub errors: BTreeMap<String, u64>,
    /// The sum of response times, in seconds.
    pub seconds: f64,
}

struct Series {
    /// The minute being filled: its start, its histogram (in microseconds) and its counts.
    current: Option<(i64, Histogram<u64>, Minute)>,
    closed: VecDeque<Minute>,
    totals: Totals,
}

impl Metrics {
    /// No series yet.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records one request of `app` served by (or failed for) `process_type`, answered with `status` (and the
    /// router's `code`) after `took`, at unix second `now`.
    pub fn request(
        &self,
        app: &str,
        process_type: &str,
        status: u16,
        code: Option<&str>,
        took: Duration,
        now: i64,
    ) {
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        // The common case allocates nothing: the series exists.
        let exists = all
            .get(app)
            .is_some_and(|types| types.contains_key(process_type));
        if !exists {
            let count: usize = all.values().map(FastMap::len).sum();
            if count >= MAX_SERIES {
                return;
            }
            all.entry(app.to_string())
                .or_default()
                .insert(process_type.to_string(), Series::new());
        }
        let series = all
            .get_mut(app)
            .and_then(|types| types.get_mut(process_type))
            .expect("just made");
        let start = minute_of(now);
        series.roll(start);
        let (_, histogram, minute) = series.current.get_or_insert_with(|| {
            let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds");
            (start, histogram, Minute::empty(start))
        });
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        minute.requests[class] += 1;
        series.totals.requests[class] += 1;
        series.totals.seconds += took.as_secs_f64();
        histogram.saturating_record(took.as_micros().clamp(1, u128::from(u64::MAX)) as u64);
        if let Some(code) = code {
            count_code(&mut minute.errors, code);
            count_code(&mut series.totals.errors, code);
        }
    }

    /// The series of `app` as of unix second `now`, by process type.
    pub fn app(&self, app: &str, now: i64) -> Vec<TypeMetrics> {
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let start = minute_of(now);
        let mut found: Vec<TypeMetrics> = all
            .get_mut(app)
            .into_iter()
            .flat_map(|types| types.iter_mut())
            .map(|(kind, series)| {
                series.roll(start);
                series.report(kind)
            })
            .collect();
        found.sort_by(|a, b| a.process_type.cmp(&b.process_type));
        found
    }

    /// Every series, for a scrape: app, process type, totals, and the latest minute's summary.
    pub fn all(&self, now: i64) -> Vec<(String, TypeMetrics)> {
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let start = minute_of(now);
        let mut found: Vec<(String, TypeMetrics)> = all
            .iter_mut()
            .flat_map(|(app, types)| types.iter_mut().map(move |(kind, s)| (app, kind, s)))
            .map(|(app, kind, series)| {
                series.roll(start);
                let mut report = series.report(kind);
                report.minutes.truncate(1);
                (app.clone(), report)
            })
            .collect();
        found.sort_by(|a, b| (&a.0, &a.1.process_type).cmp(&(&b.0, &b.1.process_type)));
        found
    }

    /// Forgets `app` (it was destroyed).
    pub fn remove_app(&self, app: &str) {
        let mut all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        all.remove(app);
    }
}

/// The unix second the minute of `now` starts at.
fn minute_of(now: i64) -> i64 {
    now - now.rem_euclid(60)
}

/// Counts one more `code` in `codes`, which holds at most [`MAX_CODES`] distinct ones.
fn count_code(codes: &mut BTreeMap<String, u64>, code: &str) {
    if codes.len() < MAX_CODES || codes.contains_key(code) {
        *codes.entry(code.to_string()).or_default() += 1;
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Metrics").field("apps", &all.len()).finish()
    }
}

impl Series {
    fn new() -> Series {
        Series {
            current: None,
            closed: VecDeque::new(),
            totals: Totals::default(),
        }
    }

    /// Closes the minute being filled when `start` is a later minute.
    fn roll(&mut self, start: i64) {
        if self.current.as_ref().is_some_and(|(at, ..)| *at < start) {
            let (_, histogram, mut minute) = self.current.take().expect("checked");
            minute.summarize(&histogram);
            self.closed.push_front(minute);
            self.closed.truncate(MINUTES_KEPT);
        }
        // Minutes older than a day go even when no request came to close them.
        while self
            .closed
            .back()
            .is_some_and(|m| m.start <= start - 60 * MINUTES_KEPT as i64)
        {
            self.closed.pop_back();
        }
    }

    fn report(&self, kind: &str) -> TypeMetrics {
        let mut minutes = Vec::with_capacity(self.closed.len() + 1);
        if let Some((_, histogram, minute)) = &self.current {
            let mut open = minute.clone();
            open.summarize(histogram);
            minutes.push(open);
        }
        minutes.extend(self.closed.iter().cloned());
        TypeMetrics {
            process_type: kind.to_string(),
            minutes,
            totals: self.totals.clone(),
        }
    }
}

impl Minute {
    fn empty(start: i64) -> Minute {
        Minute {
            start,
            requests: [0; 5],
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            max_ms: 0.0,
            errors: BTreeMap::new(),
        }
    }

    fn summarize(&mut self, histogram: &Histogram<u64>) {
        let ms = |micros: u64| micros as f64 / 1000.0;
        self.p50_ms = ms(histogram.value_at_quantile(0.50));
        self.p95_ms = ms(histogram.value_at_quantile(0.95));
        self.p99_ms = ms(histogram.value_at_quantile(0.99));
        self.max_ms = ms(histogram.max());
    }
}

/// The Prometheus text exposition of `series` (from [`Metrics::all`]), labelled by app and process type.
pub fn prometheus(series: &[(String, TypeMetrics)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    out.push_str(
        "# HELP wasmdyno_router_requests_total Requests the router answered, by status class.\n",
    );
    out.push_str("# TYPE wasmdyno_router_requests_total counter\n");
    for (app, m) in series {
        for (class, count) in m.totals.requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "wasmdyno_router_requests_total{{app=\"{}\",type=\"{}\",status=\"{}xx\"}} {count}",
                label(app),
                label(&m.process_type),
                class + 1
            );
        }
    }
    out.push_str(
        "# HELP wasmdyno_router_errors_total Requests that ended with a router error code.\n",
    );
    out.push_str("# TYPE wasmdyno_router_errors_total counter\n");
    for (app, m) in series {
        for (code, count) in &m.totals.errors {
            let _ = writeln!(
                out,
                "wasmdyno_router_errors_total{{app=\"{}\",type=\"{}\",code=\"{}\"}} {count}",
                label(app),
                label(&m.process_type),
                label(code)
            );
        }
    }
    out.push_str(
        "# HELP wasmdyno_router_response_seconds Response times of the latest minute with requests.\n",
    );
    out.push_str("# TYPE wasmdyno_router_response_seconds summary\n");
    for (app, m) in series {
        let (app, kind) = (label(app), label(&m.process_type));
        if let Some(minute) = m.minutes.first() {
            for (quantile, ms) in [
                ("0.5", minute.p50_ms),
                ("0.95", minute.p95_ms),
                ("0.99", minute.p99_ms),
            ] {
                let _ = writeln!(
                    out,
                    "wasmdyno_router_response_seconds{{app=\"{app}\",type=\"{kind}\",quantile=\"{quantile}\"}} {}",
                    ms / 1000.0
                );
            }
        }
        let count: u64 = m.totals.requests.iter().sum();
        let _ = writeln!(
            out,
            "wasmdyno_router_response_seconds_sum{{app=\"{app}\",type=\"{kind}\"}} {}",
            m.totals.seconds
        );
        let _ = writeln!(
            out,
            "wasmdyno_router_response_seconds_count{{app=\"{app}\",type=\"{kind}\"}} {count}"
        );
    }
    out
}

/// The Prometheus text exposition of dynos' memory and restarts, labelled by app, process type and dyno.
pub fn prometheus_dynos(dynos: &[(String, crate::dyno::DynoInfo)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (name, help, kind, value) in [
        (
            "wasmdyno_dyno_memory_bytes",
            "Bytes of the dyno's memory quota in use.",
            "gauge",
            (|d: &crate::dyno::DynoInfo| d.memory_bytes) as fn(&crate::dyno::DynoInfo) -> u64,
        ),
        (
            "wasmdyno_dyno_memory_peak_bytes",
            "The most of its memory quota the dyno has used.",
            "gauge",
            |d| d.memory_peak_bytes,
        ),
        (
            "wasmdyno_dyno_cpu_milliseconds_total",
            "Milliseconds of CPU the dyno's guests used, sampled by the 1 ms epoch ticks.",
            "counter",
            |d| d.cpu_ms,
        ),
        (
            "wasmdyno_dyno_restarts_total",
            "Times the dyno was restarted after exiting or crashing.",
            "counter",
            |d| u64::from(d.restarts),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (app, dyno) in dynos {
            let _ = writeln!(
                out,
                "{name}{{app=\"{}\",type=\"{}\",dyno=\"{}\"}} {}",
                label(app),
                label(&dyno.kind),
                label(&dyno.name),
                value(dyno)
            );
        }
    }
    out
}

/// A label value, escaped as the text format wants.
fn label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of a minute (divisible by 60).
    const T0: i64 = 1_800_000_000;

    #[test]
    fn minutes_close_with_percentiles_and_a_day_is_kept() {
        let metrics = Metrics::new();
        for ms in 1..=100 {
            metrics.request("a", "web", 200, None, Duration::from_millis(ms), T0 + 5);
        }
        metrics.request(
            "a",
            "web",
            503,
            Some("H12"),
            Duration::from_secs(30),
            T0 + 70,
        );
        let series = metrics.app("a", T0 + 75);
        let [web] = series.as_slice() else {
            panic!("{series:?}")
        };
        assert_eq!(web.minutes.len(), 2);
        let (open, first) = (&web.minutes[0], &web.minutes[1]);
        assert_eq!(open.start, T0 + 60);
        assert_eq!(open.requests, [0, 0, 0, 0, 1]);
        assert_eq!(open.errors["H12"], 1);
        assert_eq!(first.requests[1], 100);
        assert!((49.0..=51.0).contains(&first.p50_ms), "{first:?}");
        assert!((94.0..=96.0).contains(&first.p95_ms), "{first:?}");
        assert!((99.0..=101.0).contains(&first.max_ms), "{first:?}");
        assert_eq!(web.totals.requests, [0, 100, 0, 0, 1]);
        // A day later, both minutes are gone; the totals stay.
        let later = metrics.app("a", T0 + 70 + 24 * 3600 + 60);
        assert!(later[0].minutes.is_empty(), "{:?}", later[0].minutes);
        assert_eq!(later[0].totals.requests[1], 100);
    }

    #[test]
    fn codes_and_series_are_bounded() {
        let metrics = Metrics::new();
        for n in 0..100 {
            let code = format!("H{n}");
            metrics.request("a", "web", 503, Some(&code), Duration::from_millis(1), T0);
        }
        let series = metrics.app("a", T0);
        assert_eq!(series[0].minutes[0].errors.len(), MAX_CODES);
        assert_eq!(series[0].minutes[0].requests[4], 100);
        metrics.remove_app("a");
        assert!(metrics.app("a", T0).is_empty());
    }

    #[test]
    fn the_exposition_escapes_labels() {
        let metrics = Metrics::new();
        metrics.request("a\"b", "web", 200, None, Duration::from_millis(2), T0);
        let text = prometheus(&metrics.all(T0));
        assert!(
            text.contains(
                "wasmdyno_router_requests_total{app=\"a\\\"b\",type=\"web\",status=\"2xx\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("wasmdyno_router_response_seconds_count{app=\"a\\\"b\",type=\"web\"} 1")
        );
    }
}
