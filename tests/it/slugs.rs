//! Slugs through the binary: deterministic bytes, and bad slugs refused with nothing written.

use std::io::Write;

use crate::support::*;

#[test]
fn same_app_builds_the_same_slug() {
    let env = TestEnv::new();
    let app = repo().join("sample-apps/wat-hello");
    let first = env
        .run(&["build", app.to_str().unwrap(), "--json"])
        .ok()
        .json();
    let second = env
        .run(&["build", app.to_str().unwrap(), "--json"])
        .ok()
        .json();
    assert_eq!(first["sha256"], second["sha256"]);
    let path = first["path"].as_str().unwrap();
    assert!(path.ends_with(&format!("{}.tar.gz", first["sha256"].as_str().unwrap())));
    let bytes = std::fs::read(path).unwrap();
    let digest = sha256_hex(&bytes);
    assert_eq!(
        digest,
        first["sha256"].as_str().unwrap(),
        "stored content-addressed"
    );
    assert_eq!(env.stored_slugs().len(), 1);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Runs a bad slug and checks it is refused with `expected` and that no compiled code or slug was written.
fn refused(slug_bytes: &[u8], expected: &str) {
    let env = TestEnv::with_private_cache();
    let path = env.path("bad.slug");
    std::fs::write(&path, slug_bytes).unwrap();
    let out = env
        .run(&[
            "run",
            "--slug",
            path.to_str().unwrap(),
            "probe.wasm",
            "args",
        ])
        .fails();
    assert!(
        out.stderr.contains(expected),
        "expected {expected:?}:\n{out}"
    );
    assert_eq!(out.stdout, "");
    assert!(compiled(&env.cache).is_empty(), "nothing compiled");
    assert!(list(&env.home()).is_empty(), "nothing written");
}

#[test]
fn corrupted_slug_is_refused() {
    let good = std::fs::read(probe_slug()).unwrap();
    // Flip a bit in the middle: gzip's CRC or the manifest's sha256 catches it.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    refused(&bad, "cannot use slug");
    refused(&good[..good.len() / 3], "not a valid gzip tar archive");
    refused(b"", "not a valid gzip tar archive");
}

#[test]
fn malicious_slug_is_refused() {
    // A tar entry escaping app/, written with raw headers as an attacker would.
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_old();
    let name = b"app/../../../tmp/pwned";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, &b"bad"[..]).unwrap();
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    refused(&bytes, "`..` would escape the slug");

    // A slug whose file was swapped after packing.
    let good = std::fs::read(probe_slug()).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&good[..]));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if entry.path().unwrap().ends_with("probe.wasm") {
            data.extend_from_slice(b"\0trailing");
            header.set_size(data.len() as u64);
            header.set_cksum();
        }
        out.append(&header, &data[..]).unwrap();
    }
    let mut gz = out.into_inner().unwrap();
    gz.flush().unwrap();
    refused(&gz.finish().unwrap(), "does not match its sha256");
}

#[test]
fn oversized_slug_is_refused() {
    let env = TestEnv::with_private_cache();
    let out = env
        .cmd(&[
            "run",
            "--slug",
            probe_slug().to_str().unwrap(),
            "probe.wasm",
            "args",
        ])
        .env("WASMDYNO_SLUG_MAX_SIZE", "100")
        .output()
        .unwrap();
    let out = Out::from(out).fails();
    assert!(out.stderr.contains("over the limit of 100 bytes"), "{out}");
    assert!(compiled(&env.cache).is_empty());
}
