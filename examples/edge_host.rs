//! An edge host embedding wasmdyno: serves every slug in a folder, or follows apps on a central `wasmdyno serve`,
//! each app on a listener of its own (and at `<app>.localhost` on it), and prints the apps' log lines.
//!
//! ```text
//! cargo run --no-default-features --example edge_host -- --dir SLUGS --listen 127.0.0.1:8080
//! cargo run --no-default-features --example edge_host -- --follow http://127.0.0.1:5001 --token TOKEN --app NAME
//! cargo run --no-default-features --example edge_host -- --follow https://central.internal --ca-file ca.pem \
//!     --token "$(cat follower-token)" --app NAME
//! ```
//!
//! Give an edge box the server's follower token (`$WASMDYNO_HOME/follower-token`): it reads current releases and
//! slugs and nothing else. Behind a TLS proxy, follow `https://`; `--ca-file` trusts a private CA.
//!
//! `<app>.tar.gz` in the folder is app `<app>`; replacing the file deploys it (preboot: the new dynos are up
//! before the old ones stop). The first app listens on `--listen`, the next on the port after it (with port 0,
//! each gets a free port). A line `edge_host: APP on http://ADDR` says where each app is.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmdyno::edge::Central;
use wasmdyno::{Edge, Runtime, RuntimeConfig, edge::EdgeSettings, logs::LogLine};

struct Args {
    dir: Option<PathBuf>,
    follow: Option<String>,
    ca_file: Option<PathBuf>,
    token: String,
    apps: Vec<String>,
    listen: SocketAddr,
    work: PathBuf,
    poll: Duration,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        dir: None,
        follow: None,
        ca_file: None,
        token: std::env::var("WASMDYNO_TOKEN").unwrap_or_default(),
        apps: Vec::new(),
        listen: "127.0.0.1:8080".parse().expect("address"),
        work: std::env::temp_dir().join(format!("wasmdyno-edge-{}", std::process::id())),
        poll: Duration::from_millis(500),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--follow" => args.follow = Some(value()?),
            "--token" => args.token = value()?,
            "--ca-file" => args.ca_file = Some(value()?.into()),
            "--app" => args.apps.push(value()?),
            "--listen" => args.listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--work" => args.work = value()?.into(),
            "--poll-ms" => {
                let ms = value()?.parse().map_err(|e| format!("--poll-ms: {e}"))?;
                args.poll = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match (&args.dir, &args.follow) {
        (Some(_), None) => Ok(args),
        (None, Some(_)) if !args.apps.is_empty() => Ok(args),
        _ => Err(
            "usage: edge_host --dir SLUGS | --follow URL [--ca-file PEM] --token T --app NAME...; \
                  [--listen ADDR] [--work DIR] [--poll-ms N]"
                .into(),
        ),
    }
}

/// Serves `app` on a listener of its own until the process ends.
async fn listen(edge: &Arc<Edge>, app: &str, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (router, app) = (edge.router().clone(), app.to_string());
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            // The host's own hyper server, with the router as its service.
            let service = router.app_service(&app, peer, local.port());
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                let _ = conn.with_upgrades().await;
            });
        }
    });
    Ok(local)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let cache = args.work.join("code-cache");
    let runtime = Arc::new(Runtime::new(
        RuntimeConfig::default().with_cache_dir(Some(cache)),
    )?);
    let edge = Arc::new(Edge::new(runtime, &args.work, EdgeSettings::default()));
    let central = match &args.follow {
        Some(url) => {
            let central = Central::new(url, args.token.clone())?;
            Some(match &args.ca_file {
                Some(ca) => central.with_ca_file(ca)?,
                None => central,
            })
        }
        None => None,
    };
    let mut serving = HashSet::new();
    let mut next_port = args.listen.port();
    let mut poll = tokio::time::interval(args.poll);
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        // Pull what should run: the folder, or each followed app's current release.
        let pulled = match (&args.dir, &central) {
            (Some(dir), _) => edge.sync_dir(dir).await.map(|_| ()),
            (None, Some(central)) => {
                let mut result = Ok(());
                for app in &args.apps {
                    if let Err(e) = edge.follow(central, app).await {
                        result = Err(e);
                    }
                }
                result
            }
            (None, None) => unreachable!("checked by args()"),
        };
        if let Err(e) = pulled {
            eprintln!("edge_host: {e}");
        }
        // A listener and a log printer for each new app.
        for app in edge.apps() {
            if !serving.insert(app.clone()) {
                continue;
            }
            edge.logs(&app, |app: &str, line: &LogLine| println!("{app} {line}"));
            let addr = SocketAddr::new(args.listen.ip(), next_port);
            if next_port != 0 {
                next_port += 1;
            }
            let local = listen(&edge, &app, addr).await?;
            println!(
                "edge_host: {app} on http://{local} ({})",
                edge.hostname(&app)
            );
        }
    }
    eprintln!("edge_host: stopping");
    edge.shutdown().await;
    Ok(())
}
