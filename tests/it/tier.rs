//! The baseline tier: a web dyno starts on Winch's code while Cranelift's is compiled, then moves to it with
//! preboot, and no request in between fails.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn a_web_dyno_starts_on_baseline_code_and_moves_to_optimized_code_without_a_failed_request() {
    // Every web module, however small, starts on baseline code (by default only those of 4 MiB and more do), on
    // a code cache of its own: the suite's shared one has the probe's optimized code already.
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        TestEnv::new(),
        &[
            ("WASMDYNO_BASELINE_TIER", "1"),
            ("WASMDYNO_CACHE_DIR", cache.path().to_str().unwrap()),
        ],
    );
    server.cli(&["apps:create", "tiered"]).ok();
    let dir = repo().join("tests/guests/http-probe");
    let out = server
        .cli(&["deploy", "-a", "tiered", dir.to_str().unwrap()])
        .ok();
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("baseline code: web dynos start on it"),
        "{out}"
    );

    // Requests all along: on baseline code, through the replacement, on optimized code.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut served = 0;
    let moved = loop {
        let (status, response) = server.get("tiered.localhost", "/");
        assert_eq!(status, 200, "request {served}: {response}");
        served += 1;
        if served % 10 == 0 {
            let text = logs(&server, "tiered");
            // The successor on optimized code is up and its predecessor stopped.
            if let Some((_, after)) = text.split_once("Optimized code ready: replacing the dyno")
                && after.contains("State changed from starting to up")
                && after.contains("State changed from up to down")
            {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "never moved to optimized code:\n{}",
            logs(&server, "tiered")
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (before, after) = moved.split_once("Optimized code ready").unwrap();
    assert!(
        before.contains("Starting on baseline code while the optimized code is compiled"),
        "{moved}"
    );
    assert!(
        !after.contains("Starting on baseline code"),
        "the successor runs optimized code: {moved}"
    );
    assert!(!moved.contains("code=H"), "no request failed: {moved}");
    for _ in 0..20 {
        assert_eq!(server.get("tiered.localhost", "/").0, 200);
    }
    let ps = server.cli(&["ps", "-a", "tiered"]).ok().stdout;
    assert!(ps.contains("web.1") && ps.contains("up"), "{ps}");

    // The next deploy of the same code finds optimized code in the cache: no baseline code at all.
    let again = server
        .cli(&["deploy", "-a", "tiered", dir.to_str().unwrap()])
        .ok();
    assert!(
        !format!("{}{}", again.stdout, again.stderr).contains("baseline code"),
        "{again}"
    );
}
