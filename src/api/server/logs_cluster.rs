//! A log session on a cluster: the app's stream as every host has it. The history of each live host (this one's
//! and each peer's, asked for its own lines only) and the shared history in the database (which keeps the lines
//! of hosts that died) are merged in time order, each line once, and cut to the lines asked for; a tail then
//! passes on each live host's new lines as they come. A host that does not answer within [`PEER_WAIT`] is left
//! out (its lines are lost to this session, not the others').

#[allow(unused_imports)]
use super::*;
use crate::cluster::Cluster;

/// How long a peer may take to open its session.
const PEER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Lines from the tails waiting to be sent, at most (the tails wait for room: no line is dropped here).
const TAIL_BUFFER: usize = 1024;

/// The merged stream of `app` for `options`.
pub(super) async fn merged(
    p: Arc<Platform>,
    cluster: Arc<Cluster>,
    app: String,
    options: SessionOptions,
) -> Body {
    let peers = {
        let cluster = cluster.clone();
        match tokio::task::spawn_blocking(move || cluster.hosts()).await {
            Ok(Ok(hosts)) => hosts.into_iter().filter(|h| !h.this).collect(),
            _ => Vec::new(),
        }
    };
    // Tails first, so that no line falls between a host's history and its tail (one may come twice: dropped
    // below).
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(TAIL_BUFFER);
    if options.tail {
        let mut local = p.logplex.session(
            &app,
            SessionOptions {
                lines: 0,
                ..options.clone()
            },
        );
        let to_client = tx.clone();
        tokio::spawn(async move {
            while let Some(line) = local.next().await {
                if to_client.send(ndjson(&line)).await.is_err() {
                    return;
                }
            }
        });
        for peer in &peers {
            if let Some(body) = open_peer(&p, &peer.api, &app, &options, true).await {
                tokio::spawn(pump(body, tx.clone()));
            }
        }
    }
    drop(tx);

    // Every host's history, in time order, the newest `lines` of it.
    let mut history: Vec<(String, Bytes)> = Vec::new();
    let mut local = p.logplex.session(
        &app,
        SessionOptions {
            tail: false,
            ..options.clone()
        },
    );
    while let Some(line) = local.next().await {
        let bytes = ndjson(&line);
        history.push((stamp(&bytes), bytes));
    }
    for peer in &peers {
        if let Some(body) = open_peer(&p, &peer.api, &app, &options, false).await {
            let mut theirs = Vec::new();
            crate::api::client::for_each_line(body, |line| {
                theirs.push(Bytes::copy_from_slice(line));
                theirs.len() <= crate::logs::HISTORY_LINES
            })
            .await;
            history.extend(theirs.into_iter().map(|b| (stamp(&b), b)));
        }
    }
    // The shared history: what every host wrote to the database, the lines of hosts that died since included.
    // A line a live host still holds comes twice and is kept once.
    let shared = {
        let cluster = cluster.clone();
        let (app, filter) = (app.clone(), options.filter.clone());
        tokio::task::spawn_blocking(move || cluster.shared_history(&app, &filter)).await
    };
    match shared {
        Ok(Ok(lines)) => {
            let mut seen: std::collections::HashSet<Bytes> =
                history.iter().map(|(_, b)| b.clone()).collect();
            for line in lines {
                let bytes = Bytes::from(line);
                if seen.insert(bytes.clone()) {
                    history.push((stamp(&bytes), bytes));
                }
            }
        }
        Ok(Err(e)) => tracing::warn!(app, "cannot read the shared log history: {e}"),
        Err(e) => tracing::warn!(app, "cannot read the shared log history: {e}"),
    }
    history.sort_by(|a, b| a.0.cmp(&b.0));
    let skip = history.len().saturating_sub(options.lines);
    let history: Vec<(String, Bytes)> = history.into_iter().skip(skip).collect();
    let newest = history.last().map(|(at, _)| at.clone()).unwrap_or_default();
    let seen: std::collections::HashSet<Bytes> = history.iter().map(|(_, b)| b.clone()).collect();

    let history = futures_util::stream::iter(
        history
            .into_iter()
            .map(|(_, bytes)| Ok::<_, std::convert::Infallible>(bytes)),
    );
    let tail = futures_util::stream::unfold((rx, seen), move |(mut rx, seen)| {
        let newest = newest.clone();
        async move {
            loop {
                let line = rx.recv().await?;
                // A line from before the history's end that the history already had came twice.
                if stamp(&line) <= newest && seen.contains(&line) {
                    continue;
                }
                return Some((Ok(line), (rx, seen)));
            }
        }
    });
    Body::from_stream(futures_util::StreamExt::chain(history, tail))
}

/// Passes a peer's NDJSON lines on as they come, waiting for room (the peer's session then waits too).
async fn pump(mut body: hyper::body::Incoming, to_client: tokio::sync::mpsc::Sender<Bytes>) {
    use http_body_util::BodyExt;
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if to_client.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        // A log line is at most a few KiB; a peer sending more without a newline is not a log session.
        if pending.len() > MAX_LINE {
            return;
        }
    }
}

/// The longest line accepted from a peer.
const MAX_LINE: usize = 64 * 1024;

/// Opens a session of `app`'s own lines on the peer whose API is at `api`; its NDJSON body.
async fn open_peer(
    p: &Platform,
    api: &str,
    app: &str,
    options: &SessionOptions,
    tail: bool,
) -> Option<hyper::body::Incoming> {
    let client = crate::api::client::Client::new(api.to_string(), p.token.clone());
    let source = options.filter.source.map(|s| match s {
        Source::App => "app",
        Source::Platform => "wasmdyno",
    });
    let request = serde_json::json!({
        "lines": if tail { 0 } else { options.lines },
        "tail": tail,
        "ps": options.filter.ps,
        "dyno": options.filter.dyno,
        "source": source,
        "local": true,
    });
    let opened = tokio::time::timeout(PEER_WAIT, async {
        let session: serde_json::Value = client
            .post(&format!("/apps/{app}/log-sessions"), &request)
            .await
            .ok()?;
        let url = session["logplex_url"].as_str()?.to_string();
        client
            .send(hyper::Method::GET, &url, "application/json", Bytes::new())
            .await
            .ok()
    })
    .await;
    match opened {
        Ok(Some(response)) => Some(response.into_body()),
        _ => {
            tracing::warn!(api, app, "a host did not open its log session");
            None
        }
    }
}

/// A line's timestamp (RFC 3339 in UTC with a fixed width, so strings sort as times).
fn stamp(line: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["timestamp"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A line as a log session sends it: JSON and a newline.
pub(super) fn ndjson(line: &LogLine) -> Bytes {
    let mut bytes = serde_json::to_vec(line).expect("log lines serialize");
    bytes.push(b'\n');
    Bytes::from(bytes)
}
