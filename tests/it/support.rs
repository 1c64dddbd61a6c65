//! Test helpers: a private `WASMDYNO_HOME` per test, the real binary, and guests built once per run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_wasmdyno");

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One compiled-code cache for the whole run, so each guest is compiled once.
pub fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("code-cache")
}

/// A private wasmdyno home for one test.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub cache: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
            cache: shared_cache(),
        }
    }

    /// A test env with its own, empty compiled-code cache.
    pub fn with_private_cache() -> TestEnv {
        let env = TestEnv::new();
        let cache = env.dir.path().join("code-cache");
        TestEnv { cache, ..env }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        self.configure(cmd)
    }

    /// The CLI with `args`, run inside the network namespace `ns` (`ip netns exec`).
    pub fn cmd_in_netns(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, BIN]).args(args);
        self.configure(cmd)
    }

    fn configure(&self, mut cmd: Command) -> Command {
        cmd.env("WASMDYNO_HOME", self.home())
            .env("WASMDYNO_CACHE_DIR", &self.cache)
            .env_remove("WASMDYNO_BUILDPACK")
            .env_remove("WASMDYNO_RUST_TOOLCHAIN")
            .env_remove("WASMDYNO_SLUG_MAX_SIZE")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(self.cmd(args).output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Feed stdin from a thread: the child may fill its stdout pipe before it reads all of it.
        let mut pipe = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        let feeder = std::thread::spawn(move || pipe.write_all(&input));
        let out = Out::from(child.wait_with_output().unwrap());
        feeder
            .join()
            .unwrap()
            .expect("the dyno reads all of its stdin");
        out
    }

    /// Files under the slug store.
    pub fn stored_slugs(&self) -> Vec<PathBuf> {
        list(&self.home().join("slugs"))
    }
}

pub fn list(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                found.extend(list(&entry.path()));
            } else {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// A finished command's status and output.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Out {
        Out {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, Some(0), "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn fails(self) -> Out {
        assert_ne!(self.code, Some(0), "command should have failed:\n{self}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The probe guest (`tests/guests/probe.wat`) as an app directory with a Procfile.
pub fn probe_app(dir: &Path, procfile: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(repo().join("tests/guests/probe.wat"), dir.join("probe.wat")).unwrap();
    std::fs::write(dir.join("Procfile"), procfile).unwrap();
}

/// A slug of the probe guest, built once per test run through the wasm buildpack.
pub fn probe_slug() -> &'static Path {
    static SLUG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &SLUG
        .get_or_init(|| {
            let env = TestEnv::new();
            let app = env.path("probe-app");
            probe_app(
                &app,
                "greet: probe.wat args from-procfile $GREETING\ncat: probe.wasm cat\n",
            );
            let slug = env.path("probe.slug");
            env.run(&["build", app.to_str().unwrap(), "-o", slug.to_str().unwrap()])
                .ok();
            (env.dir, slug)
        })
        .1
}

/// A running `wasmdyno serve` on an ephemeral loopback port, with its own home; stopped on drop.
pub struct Server {
    pub env: TestEnv,
    pub child: std::process::Child,
    pub api: String,
    /// The router's address, `127.0.0.1:PORT`.
    pub router: String,
    stopped: bool,
}

impl Server {
    pub fn start() -> Server {
        Server::start_in(TestEnv::new(), &[])
    }

    /// Starts a server on `env`'s home, with extra environment variables (e.g. a failpoint).
    pub fn start_in(env: TestEnv, vars: &[(&str, &str)]) -> Server {
        let mut cmd = env.cmd(&["serve", "--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"]);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Server::spawn(env, cmd)
    }

    /// Starts `cmd`, a `wasmdyno serve` on `env`'s home, and reads the addresses it prints.
    pub fn spawn(env: TestEnv, mut cmd: Command) -> Server {
        use std::io::BufRead;
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let api = line
            .trim()
            .strip_prefix("wasmdyno serve: API on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_string();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let router = line
            .trim()
            .strip_prefix("wasmdyno serve: router on http://")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected second line from serve: {line:?}"))
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Server {
            env,
            child,
            api,
            router,
            stopped: false,
        }
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, args: &[&str]) -> Out {
        self.env.run(args)
    }

    /// Stops the server (SIGTERM) and waits for it; returns its home for a restart.
    pub fn stop(mut self) -> TestEnv {
        self.terminate();
        std::mem::replace(&mut self.env, TestEnv::new())
    }

    /// Waits for the server to exit by itself (e.g. at a failpoint); returns its home for a restart.
    pub fn wait_exit(mut self) -> (Option<i32>, TestEnv) {
        let status = self.child.wait().unwrap();
        self.stopped = true;
        (
            status.code(),
            std::mem::replace(&mut self.env, TestEnv::new()),
        )
    }

    fn terminate(&mut self) {
        if !self.stopped {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
            let _ = self.child.wait();
            self.stopped = true;
        }
    }

    /// The API token the server wrote.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.env.home().join("token")).unwrap()
    }

    /// A GET through the router with `Host: <host>`; returns (status, headers and body).
    pub fn get(&self, host: &str, path: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        exchange(&self.router, request.as_bytes(), STEP).unwrap()
    }

    /// A request with a body through the router with `Host: <host>`; returns (status, headers and body).
    pub fn send(
        &self,
        host: &str,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> (u16, String) {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(&self.router, request.as_bytes(), STEP).unwrap()
    }

    /// A raw HTTP/1.1 request to the API; returns (status, body).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: impl AsRef<[u8]>,
    ) -> (u16, String) {
        let body = body.as_ref();
        let addr = self.api.strip_prefix("http://").unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let (status, response) = exchange(addr, &request, STEP).unwrap();
        (status, body_of(&response).to_string())
    }
}

/// Checks the (status, body) replies of requests sent while an app moved from the `old` answer to the `new`: none
/// failed, each came from one of the two, and some from each.
pub fn assert_switched_without_failures(replies: &[(u16, String)], old: &str, new: &str) {
    let failed: Vec<_> = replies
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        replies.len(),
        &failed[..failed.len().min(5)]
    );
    let from_old = replies.iter().filter(|(_, body)| body == old).count();
    let from_new = replies.iter().filter(|(_, body)| body == new).count();
    assert_eq!(from_old + from_new, replies.len());
    assert!(
        from_old > 0 && from_new > 0,
        "old {from_old}, new {from_new}"
    );
}

/// How long a raw exchange may wait for the server to answer and close.
const STEP: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends a raw HTTP/1.1 `request` to `addr` and reads until the server closes the connection, waiting at most
/// `timeout` for each read; returns (status, the whole response). The status is 0 when the answer is no HTTP.
pub fn exchange(
    addr: &str,
    request: &[u8],
    timeout: std::time::Duration,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response))
}

/// The body of a whole HTTP response (empty if it has none).
pub fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Waits, polling every 50 ms, until `check` holds; fails naming `what` after `within`.
pub fn wait_until(what: &str, within: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The app's log lines (up to 1,500).
pub fn logs(server: &Server, app: &str) -> String {
    server.cli(&["logs", "-a", app, "-n", "1500"]).ok().stdout
}

/// Waits until `check` holds on the app's logs; fails with the logs after `within`. Returns them.
pub fn wait_logs(
    server: &Server,
    app: &str,
    what: &str,
    within: std::time::Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = logs(server, app);
        if check(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; logs:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A process's peak resident memory, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The compiled modules in a compiled-code cache (the cache's key sits beside them).
pub fn compiled(cache: &Path) -> Vec<PathBuf> {
    list(cache)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect()
}

/// A test CA (valid until 2126) and a certificate it signed for 127.0.0.1 and localhost, made with openssl.
pub const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgIUeE46yCMk6DFTbpcXBiu3Hhl/T1owCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWd2FzbWR5bm8gdGVzdCBkcmFpbiBDQTAgFw0yNjExMjMxNDI5
MTVaGA8yMTI2MTAzMDE0MjkxNVowITEfMB0GA1UEAwwWd2FzbWR5bm8gdGVzdCBk
cmFpbiBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKmam3583dD4s+tjp6lr
Yq2oDJPQw9A9E4uh5LlWjinTGXYC2oYk2AOeXBuQwh/dAk2zMqQ5oH65lUjsMiM6
xuWjYzBhMB0GA1UdDgQWBBR72XT64uflx+CwWC/wL2ijPNOy+TAfBgNVHSMEGDAW
gBR72XT64uflx+CwWC/wL2ijPNOy+TAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB
/wQEAwIBBjAKBggqhkjOPQQDAgNJADBGAiEA3bLSLf2U+a+5d3/T7QwBHVoAQ4LI
OraLLtaQ29UFhWsCIQCXc/lnmAt0lilbBzNpXA3U80xuIVdrlQD77PUx7tJGOw==
-----END CERTIFICATE-----
";

const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBzDCCAXKgAwIBAgIUKFhNfAz4V+WPZ9cTEcPpSXc+8fQwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWd2FzbWR5bm8gdGVzdCBkcmFpbiBDQTAgFw0yNjExMjMxNDI5
MTVaGA8yMTI2MTAzMDE0MjkxNVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYH
KoZIzj0CAQYIKoZIzj0DAQcDQgAEdSsKHl0Wg7KWq21cKyKRLzhlBCRkEbMrova6
XeRFfWZ4yVWO2lCbOlS9Cu42pa4VF+jwhGieU42SWCgXlthKSKOBkjCBjzAMBgNV
HRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAa
BgNVHREEEzARhwR/AAABgglsb2NhbGhvc3QwHQYDVR0OBBYEFNYMFjw2yoJw7xrU
LgKbIu6kBCWxMB8GA1UdIwQYMBaAFHvZdPri5+XH4LBYL/AvaKM807L5MAoGCCqG
SM49BAMCA0gAMEUCIDUe4zYZcAaXMgMRc+eGOhdm5eJYopkvxe70YAulSiB/AiEA
wVBrKZASk+h0VciW83Yjp8U5iHTdDNPopZQdMG+b0ow=
-----END CERTIFICATE-----
";

/// The test certificate's key. A key for tests only: it protects nothing.
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQggQdJVsS+VMdMItYC
WPGhiTaokCIt3XJaniabK9YiB4ehRANCAAR1KwoeXRaDsparbVwrIpEvOGUEJGQR
syui9rpd5EV9ZnjJVY7aUJs6VL0K7jalrhUX6PCEaJ5TjZJYKBeW2EpI
-----END PRIVATE KEY-----
";

pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(TEST_CERT.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(TEST_KEY.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// The versions of `app`'s releases, oldest first, as `server` lists them.
pub fn versions(server: &Server, app: &str) -> Vec<u64> {
    let releases = server
        .cli(&["releases", "-a", app, "-n", "1000", "--json"])
        .ok()
        .json();
    releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_u64().unwrap())
        .collect()
}

/// Creates `app` with `config` (`KEY=VALUE`), deploys `sample-apps/<sample>` to it through the server's build, and
/// waits (up to two minutes: a first build installs its toolchain) for `path` to answer 200; returns that answer.
pub fn deploy_sample(
    server: &Server,
    app: &str,
    sample: &str,
    config: &[&str],
    path: &str,
) -> String {
    server.cli(&["apps:create", app]).ok();
    if !config.is_empty() {
        server
            .cli(&[&["config:set", "-a", app][..], config].concat())
            .ok();
    }
    let dir = repo().join("sample-apps").join(sample);
    server
        .cli(&["deploy", "-a", app, dir.to_str().unwrap()])
        .ok();
    let host = format!("{app}.localhost");
    let mut page = String::new();
    wait_until(
        &format!("{sample} answers"),
        std::time::Duration::from_secs(120),
        || {
            let (status, response) = server.get(&host, path);
            page = response;
            status == 200
        },
    );
    page
}

/// Creates the app `healthy` (the probe component, from the router's tests) on `server` and waits until it answers;
/// returns its `Host`. The bystander of the containment tests: it must answer every request beside an attack.
pub fn healthy_app(server: &Server) -> String {
    server.cli(&["apps:create", "healthy"]).ok();
    crate::router::release_slug(server, "healthy", crate::router::probe());
    let port = server.router.rsplit(':').next().unwrap();
    let host = format!("healthy.localhost:{port}");
    wait_until(
        "the healthy app to answer",
        std::time::Duration::from_secs(60),
        || server.get(&host, "/").0 == 200,
    );
    host
}

/// Waits until `app` has a dyno up.
pub fn wait_dyno_up(server: &Server, app: &str) {
    wait_until(
        &format!("{app}'s dyno to be up"),
        std::time::Duration::from_secs(60),
        || {
            server
                .cli(&["ps", "-a", app, "--json"])
                .ok()
                .stdout
                .contains("\"up\"")
        },
    );
}

/// `app`'s host name with `server`'s router port (`app.localhost:PORT`), for a Host header.
pub fn host_of(server: &Server, app: &str) -> String {
    format!(
        "{app}.localhost:{}",
        server.router.rsplit(':').next().unwrap()
    )
}
