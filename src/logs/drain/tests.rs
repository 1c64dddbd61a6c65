use std::time::{Duration, UNIX_EPOCH};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::frame::{Encoder, parse_frames, priority};
use super::http::base64;
use super::url::MAX_URL_LEN;
use super::*;

/// Generous enough never to fire on a slow machine: these tests assert outcomes, not timings.
const PATIENCE: Duration = Duration::from_secs(60);

fn at(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

fn line(source: Source, dyno: &str, text: &str) -> LogLine {
    LogLine::new(at(1_795_435_200_123_456), source, dyno, text)
}

fn encode(hostname: &str, lines: &[LogLine]) -> Vec<u8> {
    let mut encoder = Encoder::new(hostname);
    let mut out = Vec::new();
    for line in lines {
        encoder.encode(&mut out, line);
    }
    out
}

#[test]
fn syslog_and_http_urls_parse() {
    let url = DrainUrl::parse("syslog://logs.example.com:514").unwrap();
    assert_eq!(
        (
            url.protocol,
            url.tls,
            url.host.as_str(),
            url.port,
            url.target.as_str()
        ),
        (Protocol::Syslog, false, "logs.example.com", 514, "")
    );
    let url = DrainUrl::parse("syslog+tls://LOGS.example.com:6514/").unwrap();
    assert_eq!((url.tls, url.host.as_str()), (true, "logs.example.com"));
    let url = DrainUrl::parse("https://user:p%40ss@collector.example/logs?app=1").unwrap();
    assert_eq!(
        (url.protocol, url.tls, url.port, url.target.as_str()),
        (Protocol::Http, true, 443, "/logs?app=1")
    );
    assert_eq!(
        url.credentials,
        Some(("user".to_owned(), "p@ss".to_owned()))
    );
    assert_eq!(
        url.to_string(),
        "https://***@collector.example:443/logs?app=1"
    );
    let url = DrainUrl::parse("http://127.0.0.1:8080").unwrap();
    assert_eq!((url.port, url.target.as_str()), (8080, "/"));
    assert_eq!(url.authority(), "127.0.0.1:8080");
    let url = DrainUrl::parse("http://[::1]:9000?x").unwrap();
    assert_eq!((url.host.as_str(), url.target.as_str()), ("::1", "/?x"));
    assert_eq!(url.authority(), "[::1]:9000");
    assert_eq!(DrainUrl::parse("http://h").unwrap().port, 80);
}

#[test]
fn bad_urls_say_what_is_wrong() {
    for (url, says) in [
        ("ftp://host:21", "unsupported scheme"),
        ("logs.example.com:514", "give it as"),
        ("syslog://logs.example.com", "needs a port"),
        ("syslog://host:0", "not a port"),
        ("syslog://host:65536", "not a port"),
        ("syslog://host:+5", "not a port"),
        ("syslog://host:514/path", "no path"),
        ("syslog://u:p@host:514", "no user"),
        ("https://:443/", "no host"),
        ("https://bad_host!/", "not a host name"),
        ("https://-bad.example/", "not a host name"),
        ("http://[::1/", "closing bracket"),
        ("http://[nope]:80/", "not an IPv6 address"),
        ("http://host/a b", "not allowed"),
        ("http://host/#frag", "fragment"),
        ("http://us%zzer@host/", "two hex digits"),
    ] {
        let err = DrainUrl::parse(url).expect_err(url);
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
    let long = format!("https://host/{}", "a".repeat(MAX_URL_LEN));
    assert!(DrainUrl::parse(&long).is_err());
}

#[test]
fn frames_are_octet_counted_rfc5424_messages() {
    let out = encode("d.token", &[line(Source::App, "web.1", "Hello, world")]);
    let message = "<190>1 2026-11-23T12:00:00.123456+00:00 d.token app web.1 - Hello, world";
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{} {message}", message.len())
    );
}

#[test]
fn the_count_is_of_bytes_not_characters() {
    let out = encode(
        "host",
        &[line(Source::App, "web.1", "héllo ☃ \n second line")],
    );
    let frames = parse_frames(&out).unwrap();
    assert_eq!(frames.len(), 1);
    assert!(
        std::str::from_utf8(frames[0])
            .unwrap()
            .ends_with("app web.1 - héllo ☃ \n second line")
    );
}

#[test]
fn priorities_follow_the_source_and_dyno() {
    for (source, dyno, pri) in [
        (Source::App, "web.1", 190),
        (Source::App, "run.3", 190),
        (Source::App, "api", 13),
        (Source::Platform, "router", 158),
        (Source::Platform, "logplex", 172),
        (Source::Platform, "web.1", 45),
    ] {
        assert_eq!(priority(&line(source, dyno, "x")), pri, "{source}[{dyno}]");
    }
    let out = encode("host", &[line(Source::Platform, "router", "at=info")]);
    assert!(
        String::from_utf8(out)
            .unwrap()
            .contains(" <158>1 2026-11-23T12:00:00.123456+00:00 host wasmdyno router - at=info")
    );
}

#[test]
fn timestamps_are_right_within_a_second_and_across_seconds() {
    let lines: Vec<LogLine> = [
        1_795_435_200_000_001,
        1_795_435_200_999_999,
        1_795_435_201_000_000,
        1_795_435_201_050_070,
        86_400_000_000,
    ]
    .into_iter()
    .map(|micros| LogLine::new(at(micros), Source::App, "web.1", "x"))
    .collect();
    let out = encode("host", &lines);
    let frames = parse_frames(&out).unwrap();
    let stamps: Vec<&str> = frames
        .iter()
        .map(|f| std::str::from_utf8(f).unwrap().split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        stamps,
        [
            "2026-11-23T12:00:00.000001+00:00",
            "2026-11-23T12:00:00.999999+00:00",
            "2026-11-23T12:00:01.000000+00:00",
            "2026-11-23T12:00:01.050070+00:00",
            "1970-01-02T00:00:00.000000+00:00",
        ]
    );
}

#[test]
fn header_fields_are_kept_valid() {
    let out = encode(
        "my host",
        &[line(Source::App, "", "x"), line(Source::App, "we b", "y")],
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(" my_host app - - x"), "{text}");
    assert!(text.contains(" my_host app we_b - y"), "{text}");
    assert_eq!(parse_frames(text.as_bytes()).unwrap().len(), 2);
}

#[test]
fn malformed_frames_are_not_read_back() {
    assert_eq!(parse_frames(b"").unwrap().len(), 0);
    assert!(parse_frames(b"5 abcd").is_none());
    assert!(parse_frames(b"x abcd").is_none());
    assert_eq!(parse_frames(b"3 abc2 de").unwrap(), [&b"abc"[..], b"de"]);
}

#[test]
fn base64_matches_rfc4648() {
    for (input, output) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
        ("user:p@ss", "dXNlcjpwQHNz"),
    ] {
        assert_eq!(base64(input.as_bytes()), output);
    }
}

#[test]
fn backoff_doubles_up_to_its_cap_and_resets() {
    let settings = DrainSettings {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(700),
        ..DrainSettings::default()
    };
    let mut backoff = Backoff::new(&settings);
    let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
    assert_eq!(delays, [100, 200, 400, 700, 700, 700]);
    backoff.reset();
    assert_eq!(backoff.next_delay(), Duration::from_millis(100));
}

#[tokio::test]
async fn a_drains_buffer_is_bounded_and_counts_what_it_drops() {
    let logplex = Logplex::new();
    let mut session = logplex.stream("app").attach_drain(3, usize::MAX);
    for i in 0..5 {
        logplex.publish(
            "app",
            LogLine::new(at(i), Source::App, "web.1", i.to_string()),
        );
    }
    let mut batch = VecDeque::new();
    let losses = session.take(&mut batch).await.unwrap();
    let texts: Vec<&str> = batch.iter().map(LogLine::text).collect();
    assert_eq!(texts, ["0", "1", "2"]);
    assert_eq!(
        losses,
        Some(Losses {
            dropped: 2,
            since: at(3)
        })
    );
    batch.clear();
    // Taken, the buffer has room again, and the count starts over.
    logplex.publish("app", LogLine::new(at(9), Source::App, "web.1", "9"));
    assert_eq!(session.take(&mut batch).await.unwrap(), None);
    assert_eq!(batch.len(), 1);
    batch.clear();
    // Removing the app ends the drain's session.
    logplex.remove_app("app");
    assert_eq!(session.take(&mut batch).await, None);
}

#[tokio::test]
async fn a_drains_buffer_is_bounded_in_bytes_too() {
    let logplex = Logplex::new();
    let mut session = logplex.stream("app").attach_drain(100, 10);
    for text in ["123456", "7890", "x", "big line past the limit"] {
        logplex.publish("app", LogLine::new(at(1), Source::App, "web.1", text));
    }
    let mut batch = VecDeque::new();
    let losses = session.take(&mut batch).await.unwrap().unwrap();
    let texts: Vec<&str> = batch.iter().map(LogLine::text).collect();
    assert_eq!(texts, ["123456", "7890"]);
    assert_eq!(losses.dropped, 2);
    // A single line larger than the limit still goes through an empty buffer.
    batch.clear();
    logplex.publish(
        "app",
        LogLine::new(at(1), Source::App, "web.1", "x".repeat(50)),
    );
    assert_eq!(session.take(&mut batch).await.unwrap(), None);
    assert_eq!(batch.len(), 1);
}

fn test_settings() -> DrainSettings {
    DrainSettings {
        timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        ..DrainSettings::default()
    }
}

fn spec(id: &str, url: String) -> DrainSpec {
    DrainSpec {
        id: id.to_owned(),
        token: format!("d.{id}"),
        url,
    }
}

/// The messages of octet-counted frames read from `socket` until `done` holds of them (or the connection ends),
/// checking the framing.
async fn read_until(
    socket: &mut tokio::net::TcpStream,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut bytes = Vec::new();
    let messages = |bytes: &[u8]| -> Option<Vec<String>> {
        Some(
            parse_frames(bytes)?
                .into_iter()
                .map(|m| String::from_utf8(m.to_vec()).unwrap())
                .collect(),
        )
    };
    let read = async {
        loop {
            if messages(&bytes).is_some_and(|m| done(&m)) {
                break;
            }
            let mut chunk = [0u8; 65536];
            let n = socket.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the frames came");
    messages(&bytes).expect("whole frames")
}

async fn read_messages(socket: &mut tokio::net::TcpStream, count: usize) -> Vec<String> {
    read_until(socket, |m| m.len() >= count).await
}

#[tokio::test]
async fn a_syslog_drain_delivers_and_reconnects_by_itself() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let logplex = Logplex::new();
    let drains = Drains::new(logplex.clone(), test_settings());
    drains.set(
        "app",
        vec![spec("one", format!("syslog://127.0.0.1:{port}"))],
    );
    logplex.publish("app", line(Source::App, "web.1", "first"));
    let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let messages = read_messages(&mut socket, 1).await;
    assert_eq!(
        messages,
        ["<190>1 2026-11-23T12:00:00.123456+00:00 d.one app web.1 - first"]
    );
    // The receiver goes away: the drain notices (it sees the connection's end before it writes again), connects
    // again, and sends what came meanwhile. (Should the end reach it only after a write, as on a loaded machine,
    // that line is lost in the dead connection, like any TCP sender's: the next one goes through.)
    drop(socket);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut socket = loop {
        logplex.publish("app", line(Source::App, "web.1", "second"));
        let wait = tokio::time::timeout(Duration::from_millis(500), listener.accept());
        if let Ok(accepted) = wait.await {
            break accepted.unwrap().0;
        }
        assert!(tokio::time::Instant::now() < deadline, "no reconnection");
    };
    let messages = read_messages(&mut socket, 1).await;
    assert!(messages[0].ends_with(" - second"), "{messages:?}");
    let status = drains.status("app", "one").unwrap();
    assert!(status.delivered >= 2, "{status:?}");
    assert_eq!(status.dropped, 0);

    // Stopping the drain closes its connection.
    drains.stop_app("app");
    assert!(drains.running("app").is_empty());
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut rest))
        .await
        .expect("the connection closes")
        .unwrap();
}

#[tokio::test]
async fn a_dead_drain_never_blocks_the_stream_and_reports_its_losses() {
    // A port nobody listens on: every connection is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let logplex = Logplex::new();
    let settings = DrainSettings {
        buffer_lines: 100,
        ..test_settings()
    };
    let drains = Drains::new(logplex.clone(), settings);
    drains.set(
        "app",
        vec![spec("dead", format!("syslog://127.0.0.1:{closed}"))],
    );
    // Publishing never waits for the drain.
    for i in 0..50_000 {
        logplex.publish("app", line(Source::App, "web.1", &i.to_string()));
    }
    // Once a receiver shows up on that port, the drain gets there, delivers its buffer, and reports the rest.
    let listener = TcpListener::bind(("127.0.0.1", closed)).await.unwrap();
    let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut messages = read_until(&mut socket, |m| m.iter().any(|m| m.contains("Error L10"))).await;
    // Then it delivers new lines again.
    logplex.publish("app", line(Source::App, "web.1", "after"));
    messages.extend(read_until(&mut socket, |m| m.iter().any(|m| m.ends_with(" - after"))).await);
    let l10: Vec<&String> = messages
        .iter()
        .filter(|m| m.contains("Error L10"))
        .collect();
    assert_eq!(l10.len(), 1, "{l10:?}");
    assert!(
        l10[0].contains("<172>1 ")
            && l10[0].contains(" d.dead wasmdyno logplex - Error L10 (output buffer overflow): "),
        "{}",
        l10[0]
    );
    let dropped: u64 = l10[0]
        .split("overflow): ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let delivered = messages
        .iter()
        .filter(|m| m.contains(" app web.1 - "))
        .count() as u64;
    // Every line of the flood arrived or was counted.
    assert_eq!(
        delivered - 1 + dropped,
        50_000,
        "{delivered} delivered, {dropped} dropped"
    );
    assert!(l10[0].ends_with("(drain d.dead)"), "{}", l10[0]);
    // The app's own stream says so too.
    let mut history = logplex.session("app", SessionOptionsForTest::all());
    let mut seen = false;
    while let Some(line) = history.next().await {
        seen |= line.text().starts_with("Error L10") && line.dyno() == LOGPLEX_DYNO;
    }
    assert!(seen);
}

/// Every line of the history.
struct SessionOptionsForTest;

impl SessionOptionsForTest {
    fn all() -> crate::logs::SessionOptions {
        crate::logs::SessionOptions {
            lines: crate::logs::HISTORY_LINES,
            ..Default::default()
        }
    }
}

#[tokio::test]
async fn drains_are_started_stopped_and_kept_by_set() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let logplex = Logplex::new();
    let drains = Drains::new(logplex.clone(), test_settings());
    let one = spec("one", format!("syslog://127.0.0.1:{port}"));
    let two = spec("two", format!("http://127.0.0.1:{port}/"));
    drains.set("app", vec![one.clone(), two.clone()]);
    assert_eq!(drains.running("app"), [one.clone(), two.clone()]);
    assert_eq!(logplex.session_count("app"), 2);
    drains.set("app", vec![two.clone()]);
    assert_eq!(drains.running("app"), vec![two.clone()]);
    // An unusable URL is skipped.
    drains.set("app", vec![two.clone(), spec("bad", "ftp://x".into())]);
    assert_eq!(drains.running("app"), [two]);
    drains.set("app", Vec::new());
    assert!(drains.running("app").is_empty());
    // The aborted tasks let go of their sessions.
    tokio::time::timeout(PATIENCE, async {
        while logplex.session_count("app") > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the sessions detach");
}

/// One HTTP/1.1 request read off `socket`: its head and body, or `None` at the end of the connection.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let mut chunk = [0u8; 65536];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .unwrap()
        .parse()
        .unwrap();
    while bytes.len() < head_end + length {
        let mut chunk = [0u8; 65536];
        let n = socket.read(&mut chunk).await.ok()?;
        assert!(n > 0, "the body is cut short");
        bytes.extend_from_slice(&chunk[..n]);
    }
    Some((head, bytes[head_end..].to_vec()))
}

fn header<'h>(head: &'h str, name: &str) -> &'h str {
    head.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(": ")?;
            key.eq_ignore_ascii_case(name).then_some(value)
        })
        .unwrap_or("")
}

#[tokio::test]
async fn an_http_drain_retries_server_errors_and_gives_up_on_refusals() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let logplex = Logplex::new();
    let drains = Drains::new(logplex.clone(), test_settings());
    drains.set(
        "app",
        vec![spec("web", format!("http://127.0.0.1:{port}/in"))],
    );
    logplex.publish("app", line(Source::App, "web.1", "first"));
    let (mut socket, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let answer =
        |status: &str| format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").into_bytes();
    // 503: the same batch comes again, with the same frame id.
    let (head, body) = read_request(&mut socket).await.unwrap();
    assert!(head.starts_with("POST /in HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "content-type"), "application/logplex-1");
    assert_eq!(header(&head, "logplex-msg-count"), "1");
    assert_eq!(header(&head, "logplex-drain-token"), "d.web");
    assert_eq!(header(&head, "host"), format!("127.0.0.1:{port}"));
    let frame_id = header(&head, "logplex-frame-id").to_owned();
    assert_eq!(
        String::from_utf8(body.clone()).unwrap(),
        "62 <190>1 2026-11-23T12:00:00.123456+00:00 host app web.1 - first"
    );
    socket
        .write_all(&answer("503 Service Unavailable"))
        .await
        .unwrap();
    let (head, again) = read_request(&mut socket).await.unwrap();
    assert_eq!(header(&head, "logplex-frame-id"), frame_id);
    assert_eq!(again, body);
    // 400: resending cannot help; the batch is dropped and reported.
    socket.write_all(&answer("400 Bad Request")).await.unwrap();
    let (head, body) = read_request(&mut socket).await.unwrap();
    assert_ne!(header(&head, "logplex-frame-id"), frame_id);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("<172>1 ")
            && body.contains(" host wasmdyno logplex - Error L10 (output buffer overflow): 1 messages dropped since 2026-11-23T12:00:00.123456+00:00 (drain d.web)"),
        "{body}"
    );
    socket.write_all(&answer("204 No Content")).await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while drains.status("app", "web").unwrap().delivered < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the L10 line is delivered");
    let status = drains.status("app", "web").unwrap();
    assert_eq!((status.delivered, status.dropped), (1, 1));
    assert_eq!(status.error, None);
}
