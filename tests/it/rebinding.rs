//! DNS rebinding: a name the app may reach answers a public address, then a loopback one. The platform resolves
//! each outgoing request once, checks every address and connects to the address it checked, so the second
//! answer is refused for what it is and no request ever reaches a loopback listener. The name is served by a real
//! DNS server on loopback (the operator's `WASMDYNO_GUEST_DNS`), answering each question over UDP.

use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::deploy_probe;
use crate::support::*;

/// A DNS server on 127.0.0.1 that answers `A` questions for any name with `answers` in turn (TTL 0), and every
/// other question with no records. Stops when dropped.
struct RebindingDns {
    addr: std::net::SocketAddr,
    asked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl RebindingDns {
    fn start(answers: Vec<[u8; 4]>) -> RebindingDns {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let (asked, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (counter, stopped) = (asked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut query = [0u8; 512];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut query) else {
                    continue;
                };
                if let Some(reply) = answer(&query[..n], &answers, &counter) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        RebindingDns { addr, asked, stop }
    }
}

impl Drop for RebindingDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The reply to one query: its header and question echoed, and for an `A` question the next of `answers`.
fn answer(query: &[u8], answers: &[[u8; 4]], asked: &AtomicUsize) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question's name: labels up to a zero byte; then its type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + query[end] as usize;
    }
    let question_end = end + 5;
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    let mut reply = Vec::with_capacity(question_end + 16);
    reply.extend_from_slice(&query[..2]); // the query's id
    reply.extend_from_slice(&[0x81, 0x80]); // a response, recursion desired and available, no error
    reply.extend_from_slice(&[0, 1]); // one question
    let a = qtype == 1;
    reply.extend_from_slice(&[0, a as u8, 0, 0, 0, 0]); // answers, authority and additional records
    reply.extend_from_slice(&query[12..question_end]);
    if a {
        let n = asked.fetch_add(1, Ordering::SeqCst);
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]); // the name, A, IN, TTL 0, 4 bytes
        reply.extend_from_slice(&answers[n % answers.len()]);
    }
    Some(reply)
}

#[test]
fn a_name_that_rebinds_to_loopback_never_reaches_it() {
    // What the rebinding name would reach: a loopback listener that counts connections.
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let port = target.local_addr().unwrap().port();
    // A public address first (where nothing answers: connecting there times out), loopback next.
    let dns = RebindingDns::start(vec![[1, 2, 3, 4], [127, 0, 0, 1]]);
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_GUEST_DNS", &dns.addr.to_string()),
            ("WASMDYNO_CONNECT_TIMEOUT_MS", "500"),
        ],
    );
    deploy_probe(&server, "rebind");
    let destination = format!("rebind.example:{port}");
    server
        .cli(&["network:allow", &destination, "-a", "rebind"])
        .ok();
    // The restarted dyno carries the policy once a request is no longer denied for its name.
    wait_until("the policy to take effect", Duration::from_secs(30), || {
        let (_, response) = server.get("rebind.localhost", &format!("/fetch?{destination}"));
        !response.contains("HttpRequestDenied")
    });
    let before = dns.asked.load(Ordering::SeqCst);
    let (mut refused, mut tried) = (0, 0);
    for _ in 0..6 {
        let (status, response) = server.get("rebind.localhost", &format!("/fetch?{destination}"));
        assert_eq!(status, 200, "{response}");
        let text = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(
            text.contains("error ") && !text.contains("status "),
            "a request got through: {text}"
        );
        if text.contains("DestinationIpProhibited") {
            refused += 1;
        } else {
            tried += 1;
        }
    }
    assert!(
        dns.asked.load(Ordering::SeqCst) >= before + 6,
        "the requests were resolved through the operator's DNS server"
    );
    // Both answers came: the loopback ones were refused, the public ones tried (at the public address).
    assert!(
        refused >= 1 && tried >= 1,
        "refused {refused}, tried {tried}"
    );
    assert!(
        target.accept().is_err(),
        "a guest reached the loopback listener"
    );
}
