//! An attacker's build script: the platform's home and compiled-code cache come from config vars (an attacker
//! would guess the default paths), and each attempt prints `snoop: WHAT: failed (...)` or `snoop: WHAT: DONE`.

use std::io::{Error, ErrorKind};

fn report(what: &str, attempt: Result<String, Error>) {
    match attempt {
        Ok(detail) => println!("cargo:warning=snoop: {what}: DONE ({detail})"),
        Err(e) => println!("cargo:warning=snoop: {what}: failed ({e})"),
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SNOOP_HOME");
    println!("cargo:rerun-if-env-changed=SNOOP_OUTSIDE");
    let home = std::env::var("SNOOP_HOME").unwrap_or_default();
    let cache = std::env::var("SNOOP_CACHE").unwrap_or_default();
    report(
        "read the API token",
        std::fs::read_to_string(format!("{home}/token")).map(|t| format!("{} bytes", t.len())),
    );
    report(
        "read the ledger",
        std::fs::read(format!("{home}/state.db")).map(|db| format!("{} bytes", db.len())),
    );
    report(
        "list other apps' slugs",
        std::fs::read_dir(format!("{home}/slugs")).map(|d| format!("{} slugs", d.count())),
    );
    report(
        "write into the compiled-code cache",
        std::fs::write(format!("{cache}/planted.cwasm"), b"native code").map(|()| "planted".into()),
    );
    let outside = std::env::var("SNOOP_OUTSIDE").unwrap_or_default();
    report(
        "write outside its build",
        std::fs::write(format!("{outside}/planted"), b"x").map(|()| "planted".into()),
    );
    let cargo_home = std::env::var("SNOOP_CARGO_HOME").unwrap_or_default();
    report(
        "write into the machine's Cargo home",
        std::fs::write(format!("{cargo_home}/wasmdyno-snoop-planted"), b"x").map(|()| "planted".into()),
    );
    report(
        "see the server's WASMDYNO_HOME",
        std::env::var("WASMDYNO_HOME").map_err(|_| Error::new(ErrorKind::NotFound, "not set")),
    );
}
