//! Three `wasmdyno serve` hosts, each in a network namespace of its own, joined by veth pairs on a bridge: what
//! crosses the network really crosses it (the database, through a proxy on the bridge; a router forwarding to
//! another host's; the API asking its peers). A host partitioned by taking its link down sees its packets dropped,
//! not refused, as in a real partition: it must notice within its bounds, fence itself, and come back without
//! running a dyno twice. Needs root and iproute2's `ip`, as CI has.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::{HOST_TIMEOUT, Proxy, assert_once, dynos_on, watch};
use crate::postgres::TestDatabase;
use crate::support::*;

/// A bridge with one network namespace per host on it, each reached at its own address; removed on drop.
struct Net {
    tag: String,
    subnet: u32,
    hosts: usize,
}

impl Net {
    fn new(hosts: usize) -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: (pid % 100_000).to_string(),
            subnet: 20 + pid % 200,
            hosts,
        };
        net.remove(); // what an earlier, killed run with this pid may have left
        ip(&["link", "add", &net.bridge(), "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway()),
            "dev",
            &net.bridge(),
        ]);
        ip(&["link", "set", &net.bridge(), "up"]);
        for i in 0..hosts {
            let (ns, veth) = (net.ns(i), net.veth(i));
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            ip(&["link", "set", &veth, "master", &net.bridge()]);
            ip(&["link", "set", &veth, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.ip(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("wdb{}", self.tag)
    }

    fn ns(&self, host: usize) -> String {
        format!("wdn{}h{host}", self.tag)
    }

    /// The bridge's end of the host's link.
    fn veth(&self, host: usize) -> String {
        format!("wdv{}h{host}", self.tag)
    }

    /// The bridge's own address, where the database proxy listens.
    fn gateway(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    fn ip(&self, host: usize) -> String {
        format!("10.213.{}.{}", self.subnet, 10 + host)
    }

    /// Partitions `host`: every packet to or from it is dropped from now on.
    fn cut(&self, host: usize) {
        ip(&["link", "set", &self.veth(host), "down"]);
    }

    fn heal(&self, host: usize) {
        ip(&["link", "set", &self.veth(host), "up"]);
    }

    /// `wasmdyno serve` in `host`'s namespace on a database at `url`.
    fn serve(&self, host: usize, url: &str) -> Server {
        let env = TestEnv::new();
        let addr = format!("{}:0", self.ip(host));
        let mut cmd = env.cmd_in_netns(
            &self.ns(host),
            &["serve", "--api", &addr, "--listen", &addr],
        );
        cmd.env("WASMDYNO_DATABASE_URL", url)
            .env("WASMDYNO_HOST_TIMEOUT", HOST_TIMEOUT.to_string())
            .env("WASMDYNO_HOST_CAPACITY", "20");
        Server::spawn(env, cmd)
    }

    /// Runs `f` on a thread inside `host`'s namespace (which reaches the host even while it is partitioned).
    fn inside<T: Send>(&self, host: usize, f: impl FnOnce() -> T + Send) -> T {
        let file = std::fs::File::open(format!("/var/run/netns/{}", self.ns(host)))
            .expect("the host's namespace");
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: `setns` moves only this thread, with a descriptor that stays open for the call.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                    f()
                })
                .join()
                .expect("the thread in the namespace")
        })
    }

    /// Every host's dynos of `app`, each asked from inside its namespace.
    fn running(&self, hosts: &[&Server], app: &str) -> BTreeMap<usize, Vec<String>> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, host)| (i, self.inside(i, || dynos_on(host, app))))
            .collect()
    }

    fn remove(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .stderr(std::process::Stdio::null())
            .status();
        for i in 0..self.hosts {
            for args in [
                ["link", "del", &self.veth(i)],
                ["netns", "del", &self.ns(i)],
            ] {
                let _ = Command::new("ip")
                    .args(args)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the network-namespace tests need iproute2's `ip` (and root)");
    assert!(
        out.status.success(),
        "ip {}: {} (the network-namespace tests need root)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

#[test]
fn hosts_on_a_real_network_forward_fence_when_partitioned_and_heal() {
    let net = Net::new(3);
    let db = TestDatabase::create("netns");
    let proxy = Proxy::on(&net.gateway(), db.port());
    let url = db.url_via(&net.gateway(), proxy.port);
    let (a, b, c) = (net.serve(0, &url), net.serve(1, &url), net.serve(2, &url));
    let hosts = [&a, &b, &c];
    let app = "across";

    // Released through a and scaled to two web dynos: on two hosts, so the third forwards.
    a.cli(&["apps:create", app]).ok();
    crate::router::release_slug(&a, app, crate::router::probe());
    a.cli(&["ps:scale", "-a", app, "web=2"]).ok();
    watch(
        || net.running(&hosts, app),
        "one web dyno on each of two hosts",
        Duration::from_secs(60),
        |s| s.values().filter(|names| names.len() == 1).count() == 2,
    );
    let placed = net.running(&hosts, app);
    let forwarder = (0..3).find(|i| placed[i].is_empty()).unwrap();
    let owners: Vec<usize> = (0..3).filter(|i| *i != forwarder).collect();

    // The forwarding host's router reaches both web dynos across the bridge.
    let through = hosts[forwarder];
    let mut answered = BTreeSet::new();
    wait_until(
        "both web dynos answer through the forwarding host",
        Duration::from_secs(30),
        || {
            answered.extend(answering_dyno(through, app));
            answered.len() == 2
        },
    );
    // One log stream: the forwarding host's router lines and the owners' own, through any host.
    wait_logs(
        hosts[owners[0]],
        app,
        "the forwarding host's router lines and both owners' own",
        Duration::from_secs(10),
        |logs| {
            logs.contains("dyno=host:")
                && logs.contains("dyno=web.1")
                && logs.contains("dyno=web.2")
        },
    );

    // One owner is partitioned: it fences itself before its dyno is placed elsewhere, runs nothing twice, and its
    // database calls fail within their bounds instead of hanging on a silent network.
    let (lost, kept) = (owners[0], owners[1]);
    net.cut(lost);
    let cut_at = Instant::now();
    watch(
        || net.running(&hosts, app),
        "the partitioned host fenced",
        Duration::from_secs(HOST_TIMEOUT),
        |s| s[&lost].is_empty(),
    );
    watch(
        || net.running(&hosts, app),
        "two web dynos on the hosts that are left",
        Duration::from_secs(4 * HOST_TIMEOUT + 20),
        |s| s[&forwarder].len() + s[&kept].len() == 2,
    );
    eprintln!(
        "partition: fenced and failed over {:?} after the cut",
        cut_at.elapsed()
    );
    let token = a.token();
    let (status, elapsed) = net.inside(lost, || {
        let started = Instant::now();
        let (status, _) = hosts[lost].raw("GET", "/apps", Some(&token), "");
        (status, started.elapsed())
    });
    assert_ne!(status, 200, "a partitioned host read its database");
    eprintln!("partition: a store read failed after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(25),
        "a store read on a partitioned host took {elapsed:?}"
    );
    let survivor = hosts[forwarder];
    wait_until(
        "the app answers through a live host",
        Duration::from_secs(30),
        || survivor.get(&host_of(survivor, app), "/").0 == 200,
    );

    // Healed: the host rejoins, and every dyno still runs once.
    net.heal(lost);
    let healed_at = Instant::now();
    while healed_at.elapsed() < Duration::from_secs(2 * HOST_TIMEOUT) {
        assert_eq!(assert_once(&net.running(&hosts, app)), 2);
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_until(
        "the healed host is live again",
        Duration::from_secs(30),
        || {
            let listed = survivor.cli(&["hosts", "--json"]).ok().json();
            listed.as_array().is_some_and(|h| h.len() == 3)
        },
    );
    let versions = versions(survivor, app);
    assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());

    scaled_out_across_the_hosts(&net, &hosts, app);
}

/// The web dyno that answered a `GET /` of `app` through `server`'s router (the probe says `ok <dyno> <release>`),
/// if it answered 200.
fn answering_dyno(server: &Server, app: &str) -> Option<String> {
    let (status, response) = server.get(&host_of(server, app), "/");
    (status == 200).then(|| {
        body_of(&response)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string()
    })
}

/// `web=6 worker=3` spreads over the three hosts; host c's router answers through the app's web dynos, and one
/// `logs --tail` through host b follows the workers of every host.
fn scaled_out_across_the_hosts(net: &Net, hosts: &[&Server; 3], app: &str) {
    use std::io::BufRead;
    let (b, c) = (hosts[1], hosts[2]);
    let mut tail = b
        .env
        .cmd(&["logs", "-a", app, "--tail", "-n", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, heard) = std::sync::mpsc::channel::<String>();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });

    c.cli(&["ps:scale", "-a", app, "web=6", "worker=3"]).ok();
    watch(
        || net.running(hosts, app),
        "nine dynos, on every host",
        Duration::from_secs(60),
        |s| s.values().map(Vec::len).sum::<usize>() == 9 && s.values().all(|d| !d.is_empty()),
    );
    let placed = net.running(hosts, app);
    let host_running = |dyno: &str| {
        placed
            .iter()
            .find(|(_, names)| names.iter().any(|n| n == dyno))
            .map(|(host, _)| *host)
    };
    let worker_hosts: BTreeSet<usize> = placed
        .iter()
        .filter(|(_, names)| names.iter().any(|n| n.starts_with("worker.")))
        .map(|(host, _)| *host)
        .collect();
    eprintln!("scaled out: {placed:?}");

    // Through c's router, requests are answered by the app's web dynos (c's own first: a router forwards only
    // for apps it runs no web dyno of), spread over more than one.
    let mut answered = BTreeSet::new();
    wait_until(
        "two web dynos answer through host c",
        Duration::from_secs(30),
        || {
            if let Some(dyno) = answering_dyno(c, app) {
                assert!(
                    dyno.starts_with("web.") && host_running(&dyno).is_some(),
                    "answered by {dyno:?}, not a placed web dyno: {placed:?}"
                );
                answered.insert(dyno);
            }
            answered.len() >= 2
        },
    );
    // Through b, one tail hears the workers of every host that runs one.
    let mut heard_from = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while heard_from != worker_hosts {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = heard.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "the tail through b heard workers on {heard_from:?}, not on all of {worker_hosts:?}"
            )
        });
        if let Some(dyno) = line
            .split("app[")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .filter(|d| d.starts_with("worker."))
            && line.contains(&format!("worker {dyno} beat"))
            && let Some(host) = host_running(dyno)
        {
            heard_from.insert(host);
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
}
