use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::time::parse_rfc3339;
use super::*;

/// Generous enough never to fire on a slow machine: these tests assert outcomes, not timings.
const PATIENCE: Duration = Duration::from_secs(60);

fn at(micros: i64) -> SystemTime {
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

fn line(dyno: &str, text: &str) -> LogLine {
    LogLine::new(at(1_795_435_200_000_000), Source::App, dyno, text)
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(LogLine::text).collect()
}

/// Every line a session yields until it has nothing more right now (a tailing session would then wait).
async fn read_available(session: &mut Session) -> Vec<LogLine> {
    let mut lines = Vec::new();
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(50), session.next()).await
    {
        lines.push(line);
    }
    lines
}

/// Every line of a session that ends (no tail, or its app removed).
async fn read_to_end(session: &mut Session) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let all = async {
        while let Some(line) = session.next().await {
            lines.push(line);
        }
    };
    tokio::time::timeout(PATIENCE, all)
        .await
        .expect("the session ends");
    lines
}

fn history(logplex: &Logplex, app: &str, options: SessionOptions) -> Vec<LogLine> {
    let mut session = logplex.session(app, options);
    let mut lines = Vec::new();
    // Without tail, `next` never waits: the future is ready at once.
    while let Some(line) = now_or_never(session.next()).expect("a history-only session never waits")
    {
        lines.push(line);
    }
    lines
}

/// Polls a future once.
fn now_or_never<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

fn with_lines(lines: usize) -> SessionOptions {
    SessionOptions {
        lines,
        ..SessionOptions::default()
    }
}

fn with_filter(filter: Filter) -> SessionOptions {
    SessionOptions {
        lines: HISTORY_LINES,
        filter,
        ..SessionOptions::default()
    }
}

fn tailing(lines: usize) -> SessionOptions {
    SessionOptions {
        lines,
        tail: true,
        ..SessionOptions::default()
    }
}

// ---- timestamps and the line format

#[test]
fn timestamps_print_as_rfc3339_utc_with_microseconds() {
    let cases = [
        (0, "1970-01-01T00:00:00.000000+00:00"),
        (1_795_435_200_123_456, "2026-11-23T12:00:00.123456+00:00"),
        (951_782_400_000_001, "2000-02-29T00:00:00.000001+00:00"),
        (4_107_542_400_000_000, "2100-03-01T00:00:00.000000+00:00"),
        (1_000_000_000_999_999, "2001-09-09T01:46:40.999999+00:00"),
        (253_402_300_799_000_000, "9999-12-31T23:59:59.000000+00:00"),
        (-1, "1969-12-31T23:59:59.999999+00:00"),
        (-2_208_988_800_000_000, "1900-01-01T00:00:00.000000+00:00"),
    ];
    for (micros, printed) in cases {
        assert_eq!(Rfc3339(at(micros)).to_string(), printed, "{micros} µs");
        assert_eq!(parse_rfc3339(printed), Ok(at(micros)), "{printed}");
    }
}

#[test]
fn timestamps_truncate_to_microseconds() {
    let t = UNIX_EPOCH + Duration::new(1_795_435_200, 123_456_999);
    assert_eq!(Rfc3339(t).to_string(), "2026-11-23T12:00:00.123456+00:00");
    let before = UNIX_EPOCH - Duration::from_nanos(1);
    assert_eq!(
        Rfc3339(before).to_string(),
        "1969-12-31T23:59:59.999999+00:00"
    );
}

#[test]
fn timestamps_parse_any_offset_and_precision() {
    let t = at(1_795_435_200_123_456);
    for text in [
        "2026-11-23T12:00:00.123456Z",
        "2026-11-23t12:00:00.123456z",
        "2026-11-23T13:30:00.123456+01:30",
        "2026-11-23T07:00:00.123456-05:00",
        "2026-11-23 12:00:00.123456000+00:00",
    ] {
        assert_eq!(parse_rfc3339(text), Ok(t), "{text}");
    }
    assert_eq!(
        parse_rfc3339("2026-11-23T12:00:00Z"),
        Ok(at(1_795_435_200_000_000))
    );
    assert_eq!(
        parse_rfc3339("2026-11-23T12:00:00.1234567891Z"),
        Ok(UNIX_EPOCH + Duration::new(1_795_435_200, 123_456_789))
    );
    for bad in [
        "",
        "2026-11-23",
        "2026-11-23T12:00:00",
        "2026-11-23T12:00:00.Z",
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T12:00:00+0100",
        "2026/11/23T12:00:00Z",
        "2026-11-23T12:00:00Z ",
        "２026-11-23T12:00:00Z",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad:?} parsed");
    }
    assert_eq!(
        parse_rfc3339("2024-02-29T00:00:00Z"),
        Ok(at(1_709_164_800_000_000))
    );
}

#[test]
fn lines_print_as_heroku_logs_does() {
    let app = LogLine::new(at(1_795_435_200_123_456), Source::App, "web.1", "GET / 200");
    assert_eq!(
        app.to_string(),
        "2026-11-23T12:00:00.123456+00:00 app[web.1]: GET / 200"
    );
    let platform = LogLine::new(
        at(1_795_435_200_000_000),
        Source::Platform,
        "router",
        "at=info",
    );
    assert_eq!(
        platform.to_string(),
        "2026-11-23T12:00:00.000000+00:00 wasmdyno[router]: at=info"
    );
}

#[test]
fn lines_have_a_json_form_that_reads_back() {
    let line = LogLine::new(
        at(1_795_435_200_123_456),
        Source::Platform,
        "web.1",
        "State changed \"up\"",
    );
    let json = serde_json::to_string(&line).unwrap();
    assert_eq!(
        json,
        r#"{"timestamp":"2026-11-23T12:00:00.123456+00:00","source":"wasmdyno","dyno":"web.1","text":"State changed \"up\""}"#
    );
    assert_eq!(serde_json::from_str::<LogLine>(&json).unwrap(), line);
    let bad = r#"{"timestamp":"yesterday","source":"app","dyno":"web.1","text":""}"#;
    assert!(serde_json::from_str::<LogLine>(bad).is_err());
    let unknown_source =
        r#"{"timestamp":"2026-11-23T12:00:00Z","source":"heroku","dyno":"web.1","text":""}"#;
    assert!(serde_json::from_str::<LogLine>(unknown_source).is_err());
}

#[test]
fn sources_are_named_app_and_wasmdyno() {
    assert_eq!(Source::App.to_string(), "app");
    assert_eq!(Source::Platform.to_string(), "wasmdyno");
    assert_eq!("app".parse(), Ok(Source::App));
    assert_eq!("wasmdyno".parse(), Ok(Source::Platform));
    assert!("heroku".parse::<Source>().is_err());
}

#[test]
fn convenience_constructors_stamp_now() {
    let before = SystemTime::now();
    let app = LogLine::app("api", "Release v3 created".into());
    let platform = LogLine::platform("web.1", "State changed from starting to up".into());
    let after = SystemTime::now();
    assert_eq!(
        (app.source(), app.dyno(), app.text()),
        (Source::App, "api", "Release v3 created")
    );
    assert_eq!(platform.source(), Source::Platform);
    assert_eq!(platform.dyno(), "web.1");
    for line in [app, platform] {
        assert!(before <= line.timestamp() && line.timestamp() <= after);
    }
}

// ---- long lines

#[test]
fn long_lines_are_split() {
    let logplex = Logplex::new();
    let text = "x".repeat(25_000);
    logplex.publish("a", line("web.1", &text));
    logplex.publish("a", line("web.1", &"y".repeat(MAX_LINE_BYTES)));
    let lines = history(&logplex, "a", with_lines(10));
    let lengths: Vec<usize> = lines.iter().map(|l| l.text().len()).collect();
    assert_eq!(lengths, [10_000, 10_000, 5_000, 10_000]);
    assert_eq!(
        lines[..3].iter().map(LogLine::text).collect::<String>(),
        text
    );
    assert!(
        lines
            .iter()
            .all(|l| l.timestamp() == lines[0].timestamp() && l.dyno() == "web.1")
    );
}

#[test]
fn long_lines_are_split_on_character_boundaries() {
    let logplex = Logplex::new();
    // 'é' is 2 bytes and '€' 3: after the leading 'a' neither ever ends exactly on 10,000 bytes.
    let text = format!("a{}{}", "é".repeat(7_000), "€".repeat(4_000));
    logplex.publish("a", line("web.1", &text));
    let lines = history(&logplex, "a", with_lines(10));
    assert!(lines.len() >= 3);
    assert!(
        lines
            .iter()
            .all(|l| !l.text().is_empty() && l.text().len() <= MAX_LINE_BYTES)
    );
    assert_eq!(lines[0].text().len(), 9_999);
    assert_eq!(lines.iter().map(LogLine::text).collect::<String>(), text);
}

// ---- LineWriter

fn written(app: &str, logplex: &Logplex) -> Vec<String> {
    history(logplex, app, with_lines(HISTORY_LINES))
        .iter()
        .map(|l| l.text().to_owned())
        .collect()
}

#[test]
fn line_writer_cuts_lines_and_keeps_partial_ones() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    writer.write(b"one\ntw");
    assert_eq!(written("a", &logplex), ["one"]);
    writer.write(b"o\n\nthr");
    writer.write(b"ee");
    assert_eq!(written("a", &logplex), ["one", "two", "",]);
    writer.write(b"\nfour\n");
    assert_eq!(written("a", &logplex), ["one", "two", "", "three", "four"]);
    let lines = history(&logplex, "a", with_lines(1));
    assert_eq!((lines[0].source(), lines[0].dyno()), (Source::App, "web.1"));
}

#[test]
fn line_writer_strips_carriage_returns_before_newlines() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    writer.write(b"dos\r\nsplit\r");
    writer.write(b"\nkeep\rinside\r\n\r\n");
    assert_eq!(written("a", &logplex), ["dos", "split", "keep\rinside", ""]);
}

#[test]
fn line_writer_flushes_partial_lines_on_demand_and_when_dropped() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    writer.write(b"no newline\r");
    writer.flush();
    writer.flush();
    writer.write(b"last words");
    assert_eq!(written("a", &logplex), ["no newline"]);
    drop(writer);
    assert_eq!(written("a", &logplex), ["no newline", "last words"]);
}

#[test]
fn line_writer_bounds_partial_lines() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    writer.write(&[b'x'; MAX_LINE_BYTES]);
    assert!(
        written("a", &logplex).is_empty(),
        "exactly the limit still waits for its newline"
    );
    for _ in 0..3 {
        writer.write(&[b'y'; 7_000]);
    }
    writer.write(b"\n");
    let lines = written("a", &logplex);
    let lengths: Vec<usize> = lines.iter().map(String::len).collect();
    assert_eq!(lengths, [10_000, 10_000, 10_000, 1_000]);
    writer.flush();
    assert_eq!(written("a", &logplex).len(), 4, "nothing was left over");
}

#[test]
fn line_writer_does_not_cut_characters_at_the_limit() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    // 9,999 bytes then a 3-byte '€' across the limit, written a byte at a time.
    let mut bytes = vec![b'x'; 9_999];
    bytes.extend_from_slice("€€\n".as_bytes());
    for byte in &bytes {
        writer.write(std::slice::from_ref(byte));
    }
    assert_eq!(written("a", &logplex), ["x".repeat(9_999), "€€".to_owned()]);
}

#[test]
fn line_writer_replaces_invalid_utf8() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    writer.write(b"caf\xc3");
    writer.write(b"\xa9 \xff\n");
    assert_eq!(written("a", &logplex), ["café \u{fffd}"]);
}

// ---- filters

fn published_to_every_dyno(logplex: &Logplex) {
    for dyno in [
        "web.1", "web.12", "webby.1", "worker.1", "web", "router", "api",
    ] {
        logplex.publish(
            "a",
            LogLine::new(at(0), Source::App, dyno, format!("app {dyno}")),
        );
        logplex.publish(
            "a",
            LogLine::new(at(0), Source::Platform, dyno, format!("platform {dyno}")),
        );
    }
}

fn filtered(
    logplex: &Logplex,
    ps: Option<&str>,
    dyno: Option<&str>,
    source: Option<Source>,
) -> Vec<String> {
    let filter = Filter {
        ps: ps.map(Into::into),
        dyno: dyno.map(Into::into),
        source,
    };
    history(logplex, "a", with_filter(filter))
        .iter()
        .map(|l| l.text().to_owned())
        .collect()
}

#[test]
fn filter_by_process_type() {
    let logplex = Logplex::new();
    published_to_every_dyno(&logplex);
    let web = filtered(&logplex, Some("web"), None, None);
    assert_eq!(
        web,
        [
            "app web.1",
            "platform web.1",
            "app web.12",
            "platform web.12",
            "app web",
            "platform web"
        ]
    );
    assert_eq!(
        filtered(&logplex, Some("web.1"), None, None),
        ["app web.1", "platform web.1"]
    );
    assert_eq!(
        filtered(&logplex, Some("router"), None, None),
        ["app router", "platform router"]
    );
    assert!(filtered(&logplex, Some("we"), None, None).is_empty());
    assert!(filtered(&logplex, Some("web.2"), None, None).is_empty());
}

#[test]
fn filter_by_dyno_and_source() {
    let logplex = Logplex::new();
    published_to_every_dyno(&logplex);
    assert_eq!(
        filtered(&logplex, None, Some("web.1"), None),
        ["app web.1", "platform web.1"]
    );
    assert!(
        filtered(&logplex, None, Some("web"), None)
            .iter()
            .all(|t| t.ends_with(" web"))
    );
    let platform = filtered(&logplex, None, None, Some(Source::Platform));
    assert_eq!(platform.len(), 7);
    assert!(platform.iter().all(|t| t.starts_with("platform ")));
    assert_eq!(
        filtered(&logplex, Some("web"), Some("web.12"), Some(Source::App)),
        ["app web.12"]
    );
    assert!(filtered(&logplex, Some("worker"), Some("web.1"), None).is_empty());
}

#[test]
fn filters_apply_to_tailed_lines() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let logplex = Logplex::new();
        let filter = Filter {
            ps: Some("web".into()),
            source: Some(Source::App),
            ..Filter::default()
        };
        let mut session = logplex.session(
            "a",
            SessionOptions {
                lines: 0,
                tail: true,
                filter,
            },
        );
        published_to_every_dyno(&logplex);
        assert_eq!(
            texts(&read_available(&mut session).await),
            ["app web.1", "app web.12", "app web"]
        );
    });
}

// ---- history

#[test]
fn sessions_get_100_lines_by_default() {
    let logplex = Logplex::new();
    for i in 0..300 {
        logplex.publish("a", line("web.1", &i.to_string()));
    }
    let lines = history(&logplex, "a", SessionOptions::default());
    let expected: Vec<String> = (200..300).map(|i| i.to_string()).collect();
    assert_eq!(texts(&lines), expected);
    assert_eq!(
        texts(&history(&logplex, "a", with_lines(3))),
        ["297", "298", "299"]
    );
    assert!(history(&logplex, "a", with_lines(0)).is_empty());
}

#[test]
fn history_keeps_the_last_1500_lines() {
    let logplex = Logplex::new();
    for i in 0..2_000 {
        logplex.publish("a", line("web.1", &i.to_string()));
    }
    let lines = history(&logplex, "a", with_lines(5_000));
    let expected: Vec<String> = (500..2_000).map(|i| i.to_string()).collect();
    assert_eq!(texts(&lines), expected);
    assert_eq!(
        lock(&logplex.stream("a").state).history.len(),
        HISTORY_LINES
    );
}

#[test]
fn history_gives_the_last_matching_lines() {
    let logplex = Logplex::new();
    for i in 0..100 {
        let dyno = if i % 2 == 0 { "web.1" } else { "worker.1" };
        logplex.publish("a", line(dyno, &i.to_string()));
    }
    let options = SessionOptions {
        lines: 3,
        filter: Filter {
            ps: Some("worker".into()),
            ..Filter::default()
        },
        tail: false,
    };
    assert_eq!(texts(&history(&logplex, "a", options)), ["95", "97", "99"]);
}

#[test]
fn history_is_per_app() {
    let logplex = Logplex::new();
    logplex.publish("a", line("web.1", "to a"));
    logplex.publish("b", line("web.1", "to b"));
    for i in 0..2_000 {
        logplex.publish("b", line("web.1", &i.to_string()));
    }
    assert_eq!(
        texts(&history(&logplex, "a", SessionOptions::default())),
        ["to a"]
    );
    assert_eq!(
        history(&logplex, "b", with_lines(HISTORY_LINES)).len(),
        HISTORY_LINES
    );
    logplex.remove_app("b");
    assert_eq!(
        texts(&history(&logplex, "a", SessionOptions::default())),
        ["to a"]
    );
    assert!(history(&logplex, "b", SessionOptions::default()).is_empty());
    assert!(history(&logplex, "unknown", SessionOptions::default()).is_empty());
}

// ---- tail

#[tokio::test]
async fn tail_gets_the_history_then_lines_published_after_it_attached() {
    let logplex = Logplex::new();
    logplex.publish("a", line("web.1", "before"));
    let mut session = logplex.session("a", tailing(10));
    logplex.publish("a", line("web.1", "after 1"));
    logplex.publish("b", line("web.1", "another app"));
    assert_eq!(
        texts(&read_available(&mut session).await),
        ["before", "after 1"]
    );

    // A reader waiting for the next line wakes for it.
    let publisher = logplex.clone();
    let waiting = tokio::spawn(async move {
        let line = session.next().await;
        (line, session)
    });
    tokio::task::yield_now().await;
    publisher.publish("a", line("web.1", "after 2"));
    let (next, mut session) = tokio::time::timeout(PATIENCE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.unwrap().text(), "after 2");
    assert!(read_available(&mut session).await.is_empty());
}

#[tokio::test]
async fn tail_stops_when_dropped() {
    let logplex = Logplex::new();
    let session = logplex.session("a", tailing(0));
    assert_eq!(logplex.session_count("a"), 1);
    drop(session);
    assert_eq!(logplex.session_count("a"), 0);
    logplex.publish("a", line("web.1", "nobody listens"));

    // Dropped while waiting in another task (an HTTP client going away).
    let mut session = logplex.session("a", tailing(0));
    let reader = tokio::spawn(async move { session.next().await });
    tokio::task::yield_now().await;
    reader.abort();
    assert!(reader.await.unwrap_err().is_cancelled());
    assert_eq!(logplex.session_count("a"), 0);
}

#[tokio::test]
async fn tail_ends_when_the_app_is_removed() {
    let logplex = Logplex::new();
    logplex.publish("a", line("web.1", "history"));
    let mut waiting = logplex.session("a", tailing(0));
    let reader = tokio::spawn(async move { read_to_end(&mut waiting).await });
    let mut unread = logplex.session("a", tailing(10));
    logplex.publish("a", line("web.1", "last"));
    tokio::task::yield_now().await;
    logplex.remove_app("a");

    assert_eq!(
        texts(
            &tokio::time::timeout(PATIENCE, reader)
                .await
                .unwrap()
                .unwrap()
        ),
        ["last"]
    );
    // What was queued before the removal is still read, then the session ends.
    assert_eq!(texts(&read_to_end(&mut unread).await), ["history", "last"]);
    assert_eq!(unread.next().await, None);
    assert_eq!(logplex.session_count("a"), 0);

    // The name starts afresh; the old session stays ended.
    logplex.publish("a", line("web.1", "new app"));
    assert_eq!(unread.next().await, None);
    assert_eq!(
        texts(&history(&logplex, "a", SessionOptions::default())),
        ["new app"]
    );
}

#[test]
fn sessions_without_tail_end_after_the_history() {
    let logplex = Logplex::new();
    logplex.publish("a", line("web.1", "one"));
    let mut session = logplex.session("a", with_lines(10));
    logplex.publish("a", line("web.1", "two"));
    assert_eq!(now_or_never(session.next()).unwrap().unwrap().text(), "one");
    assert_eq!(now_or_never(session.next()), Some(None));
    assert_eq!(logplex.session_count("a"), 0);
}

#[tokio::test]
async fn writers_of_a_removed_app_write_into_nothing() {
    let logplex = Logplex::new();
    let mut writer = LineWriter::new(logplex.clone(), "a", "web.1");
    let mut session = logplex.session("a", tailing(0));
    logplex.remove_app("a");
    writer.write(b"still running\n");
    assert_eq!(session.next().await, None);
    assert!(history(&logplex, "a", SessionOptions::default()).is_empty());
    assert_eq!(
        read(&logplex.apps).len(),
        1,
        "only the history-only session's lookup made a new stream"
    );
}

// ---- never blocking a writer

fn l10_count(line: &LogLine) -> u64 {
    assert_eq!(
        (line.source(), line.dyno()),
        (Source::Platform, LOGPLEX_DYNO)
    );
    let rest = line
        .text()
        .strip_prefix("Error L10 (output buffer overflow): ")
        .expect("an L10 line");
    rest.split_once(" messages dropped since ")
        .expect("an L10 line")
        .0
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_stalled_reader_never_blocks_a_writer() {
    const LINES: u64 = 1_000_000;
    let logplex = Logplex::new();
    logplex.publish("a", line("web.1", "history"));
    let mut stalled = logplex.session("a", tailing(1));
    let writer = logplex.clone();
    let flood = tokio::task::spawn_blocking(move || {
        for i in 0..LINES {
            writer.publish(
                "a",
                LogLine::new(at(i as i64), Source::App, "web.1", i.to_string()),
            );
        }
    });
    tokio::time::timeout(PATIENCE, flood)
        .await
        .expect("the writer finishes")
        .unwrap();

    // Memory stayed bounded: the history and the session's queue are at their caps.
    let stream = logplex.stream("a");
    assert_eq!(lock(&stream.state).history.len(), HISTORY_LINES);
    assert_eq!(
        lock(&stalled.subscriber.as_ref().unwrap().queue)
            .lines
            .len(),
        SESSION_BUFFER_LINES
    );

    assert_eq!(stalled.next().await.unwrap().text(), "history");
    let overflow = stalled.next().await.unwrap();
    let kept = SESSION_BUFFER_LINES as u64;
    assert_eq!(l10_count(&overflow), LINES - kept);
    let first_dropped = Rfc3339(at(kept as i64)).to_string();
    assert!(
        overflow
            .text()
            .ends_with(&format!(" messages dropped since {first_dropped}")),
        "{overflow}"
    );

    let rest = read_available(&mut stalled).await;
    let expected: Vec<String> = (0..kept).map(|i| i.to_string()).collect();
    assert_eq!(texts(&rest), expected);

    // The reader caught up: new lines come through again, with no further L10.
    logplex.publish("a", line("web.1", "caught up"));
    assert_eq!(texts(&read_available(&mut stalled).await), ["caught up"]);
}

#[tokio::test]
async fn each_overflow_is_reported_once_with_its_own_count() {
    let logplex = Logplex::new();
    // The L10 line is the reader's own: a source filter does not hide it.
    let filter = Filter {
        source: Some(Source::App),
        ..Filter::default()
    };
    let mut session = logplex.session(
        "a",
        SessionOptions {
            lines: 0,
            tail: true,
            filter,
        },
    );
    for round in 0..3u64 {
        let extra = 10 + round;
        for i in 0..SESSION_BUFFER_LINES as u64 + extra {
            logplex.publish("a", line("web.1", &i.to_string()));
        }
        let lines = read_available(&mut session).await;
        assert_eq!(lines.len(), 1 + SESSION_BUFFER_LINES);
        assert_eq!(l10_count(&lines[0]), extra);
        assert_eq!(lines[1].text(), "0");
        assert!(lines[1..].iter().all(|l| l.source() == Source::App));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_reader_gets_every_line_or_its_count() {
    const LINES: u64 = 200_000;
    let logplex = Logplex::new();
    let mut session = logplex.session("a", tailing(0));
    let reader = tokio::spawn(async move {
        let (mut received, mut dropped, mut last) = (0, 0, None);
        while let Some(line) = session.next().await {
            if line.source() == Source::Platform {
                dropped += l10_count(&line);
                continue;
            }
            let n: u64 = line.text().parse().unwrap();
            assert!(last.is_none_or(|last| n > last), "lines in order");
            last = Some(n);
            received += 1;
        }
        (received, dropped)
    });
    let writer = logplex.clone();
    let flood = tokio::task::spawn_blocking(move || {
        let mut out = LineWriter::new(writer, "a", "web.1");
        for i in 0..LINES {
            out.write(format!("{i}\n").as_bytes());
        }
    });
    tokio::time::timeout(PATIENCE, flood)
        .await
        .unwrap()
        .unwrap();
    logplex.remove_app("a");
    let (received, dropped) = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received + dropped, LINES);
}

// ---- no leaks

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_attach_and_detach_without_leaking() {
    let logplex = Logplex::new();
    let sessions: Vec<Session> = (0..1_000)
        .map(|_| logplex.session("a", tailing(0)))
        .collect();
    assert_eq!(logplex.session_count("a"), 1_000);
    logplex.publish("a", line("web.1", "to all"));
    drop(sessions);
    assert_eq!(logplex.session_count("a"), 0);

    // Attaching and detaching from many tasks while a writer publishes.
    let writer = logplex.clone();
    let publishing = tokio::task::spawn_blocking(move || {
        for i in 0..100_000 {
            writer.publish("a", line("web.1", &i.to_string()));
        }
    });
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let logplex = logplex.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    let mut session = logplex.session("a", tailing(5));
                    let _ = session.next().await;
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
    }
    tokio::time::timeout(PATIENCE, publishing)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logplex.session_count("a"), 0);
    let stream = logplex.stream("a");
    assert_eq!(
        Arc::strong_count(&stream),
        2,
        "only the map and this test hold the stream"
    );
}

#[test]
fn sessions_are_sendable_and_logplex_shareable() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Logplex>();
    send_sync::<LogLine>();
    send::<LineWriter>(&LineWriter::new(Logplex::new(), "a", "web.1"));
    let mut session = Logplex::new().session("a", tailing(0));
    send(&session.next());
}
