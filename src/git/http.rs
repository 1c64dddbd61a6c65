//! Git's smart HTTP protocol at `/git/{app}.git/...`, served by `git http-backend` run as a CGI (RFC 3875).
//!
//! Both directions stream: the request body is fed to the CGI's stdin as it arrives, and its stdout is the
//! response body as it is written, so the `pre-receive` hook's build output reaches `git push` (as `remote:`
//! lines) while the build runs. Git authenticates with HTTP Basic; the password is the API token (any user name),
//! and a request without it is answered 401 with a Basic challenge, so git asks its credential helper.
//!
//! Pushes to one app run one at a time: the app's push lock is held from the start of `git-receive-pack` until
//! the CGI exits, which is after git has updated (or refused to update) the branch. The hook checks that the branch
//! is still where the pusher saw it, so a build never starts for a push whose branch update would fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::store::{ErrorKind, Store};

/// The most a CGI header block may take before the rest is refused.
const MAX_HEAD: usize = 64 * 1024;

/// What the git routes need of the platform: where repositories live, the token a push must carry, and the store
/// that says which apps exist.
pub(crate) struct Access {
    pub home: PathBuf,
    pub token: String,
    pub store: Arc<dyn Store>,
}

struct GitServer {
    platform: Access,
    /// The executable the hooks run (this one).
    exe: Option<PathBuf>,
    /// Held by one `git-receive-pack` per app at a time.
    push_locks: crate::locks::AppLocks,
    /// Repository setup, one at a time (`git init`, writing hooks).
    setup: Arc<Mutex<()>>,
}

/// The smart HTTP routes; they authenticate on their own (Basic), outside the API's Bearer check.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(platform: Access) -> Router<S> {
    let state = Arc::new(GitServer {
        platform,
        exe: super::current_exe(),
        push_locks: Default::default(),
        setup: Arc::default(),
    });
    Router::new()
        .route("/git/{repo}/{*path}", any(serve))
        .with_state(state)
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let mut text = message.into();
    text.push('\n');
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn unauthorized() -> Response {
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        "wasmdyno: missing or wrong API token: git's password is the token in $WASMDYNO_HOME/token \
         (`wasmdyno git:remote -a APP` sets up a credential helper that sends it)",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"wasmdyno\""),
    );
    response
}

/// The user name of a request whose password (Basic) or bearer token is the API token.
fn authenticate(headers: &HeaderMap, token: &str) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (user, given) = if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        (user.to_string(), password.to_string())
    } else {
        (
            "wasmdyno".to_string(),
            value.strip_prefix("Bearer ")?.to_string(),
        )
    };
    // Constant time: how long the comparison takes says nothing about where the token differs.
    bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        token.as_bytes(),
    ))
    .then_some(user)
}

/// Standard base64 (RFC 4648), padding optional; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

async fn serve(
    State(git): State<Arc<GitServer>>,
    Path((repo, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(user) = authenticate(request.headers(), &git.platform.token) else {
        return unauthorized();
    };
    let app = repo.strip_suffix(".git").unwrap_or(&repo).to_string();
    let not_found = || {
        plain(
            StatusCode::NOT_FOUND,
            format!("wasmdyno: no app named {app:?} (create it with `wasmdyno apps:create {app}`)"),
        )
    };
    if crate::store::check_app_name(&app).is_err()
        || path.split('/').any(|part| part.is_empty() || part == "..")
    {
        return not_found();
    }
    match git.platform.store.app(&app) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return not_found(),
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("wasmdyno: {e}")),
    }
    let Some(exe) = git.exe.clone() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "wasmdyno: cannot find the wasmdyno executable to run the deploy hook",
        );
    };
    let (home, setup, name) = (git.platform.home.clone(), git.setup.clone(), app.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        let _one_at_a_time = setup.lock().expect("repository setup lock");
        super::ensure_repo(&home, &name, &exe)
    })
    .await;
    match prepared {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::error!("git repository of {app}: {e}");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("wasmdyno: cannot prepare the repository of {app}: {e}"),
            );
        }
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, format!("wasmdyno: {e}")),
    }
    let push_lock = if path == "git-receive-pack" {
        Some(git.push_locks.of(&app).lock_owned().await)
    } else {
        None
    };
    match cgi(&git.platform, &app, &path, &user, request, push_lock).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!("git http-backend for {app}: {e}");
            plain(
                StatusCode::BAD_GATEWAY,
                format!("wasmdyno: git http-backend failed: {e}"),
            )
        }
    }
}

/// Runs `git http-backend` for one request and streams its response. `push_lock` is released when it exits.
async fn cgi(
    platform: &Access,
    app: &str,
    path: &str,
    user: &str,
    request: Request,
    push_lock: Option<tokio::sync::OwnedMutexGuard<()>>,
) -> std::io::Result<Response> {
    let (parts, body) = request.into_parts();
    let mut cmd = std::process::Command::new("git");
    cmd.arg("http-backend")
        // A clean environment: nothing of the server's (a GIT_DIR, the user's git config) leaks into git or the
        // hook; the hook finds the server through the home.
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", platform.home.join("repos"))
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", format!("/{app}.git/{path}"))
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env(
            "REMOTE_USER",
            if user.is_empty() { "wasmdyno" } else { user },
        )
        .env("WASMDYNO_HOME", &platform.home)
        .env("WASMDYNO_APP", app);
    for var in ["TMPDIR", "LANG", "LC_ALL", "WASMDYNO_LOG"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    for (name, var) in [
        (header::CONTENT_TYPE, "CONTENT_TYPE"),
        (header::CONTENT_LENGTH, "CONTENT_LENGTH"),
        (header::CONTENT_ENCODING, "HTTP_CONTENT_ENCODING"),
        (HeaderName::from_static("git-protocol"), "HTTP_GIT_PROTOCOL"),
    ] {
        if let Some(value) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            cmd.env(var, value);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;

    // The child's pipes, made asynchronous (tokio's own process support is not among this crate's features).
    use tokio::net::unix::pipe;
    let mut stdin = pipe::Sender::from_owned_fd(child.stdin.take().expect("piped stdin").into())?;
    let mut stdout =
        pipe::Receiver::from_owned_fd(child.stdout.take().expect("piped stdout").into())?;
    let stderr = pipe::Receiver::from_owned_fd(child.stderr.take().expect("piped stderr").into())?;
    tokio::spawn(async move {
        let mut body = body.into_data_stream();
        while let Some(Ok(chunk)) = body.next().await {
            if stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Dropping stdin is the end of the request body.
    });
    let label = app.to_string();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!("git http-backend ({label}): {line}");
        }
    });
    tokio::spawn(async move {
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        drop(push_lock);
    });

    // The CGI header block, then the body as it comes.
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (head_len, body_start) = loop {
        if let Some(found) = header_end(&head) {
            break found;
        }
        if head.len() > MAX_HEAD {
            return Err(std::io::Error::other("its header block is too long"));
        }
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("it exited without a response"));
        }
        head.extend_from_slice(&buf[..n]);
    };
    let rest = Bytes::copy_from_slice(&head[body_start..]);
    let mut response = Response::new(Body::empty());
    for line in String::from_utf8_lossy(&head[..head_len]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split(' ').next().and_then(|c| c.parse().ok());
            if let Some(status) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
                *response.status_mut() = status;
            }
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }

    // A task keeps reading stdout even when the client has gone: git must never die writing to a closed pipe
    // between a release and its branch update.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut connected = rest.is_empty() || tx.send(rest).await.is_ok();
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if connected {
                        connected = tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_ok();
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    *response.body_mut() = Body::from_stream(stream);
    Ok(response)
}

/// Where a CGI header block ends: (its length, where the body starts). Lines end in LF or CRLF.
fn header_end(data: &[u8]) -> Option<(usize, usize)> {
    (0..data.len()).find_map(|i| {
        if data[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else if data[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_what_git_sends() {
        assert_eq!(
            base64_decode("d2FzbWR5bm86c2VjcmV0").unwrap(),
            b"wasmdyno:secret"
        );
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert!(base64_decode("not base64!").is_none());
    }

    #[test]
    fn basic_or_bearer_with_the_token_authenticates() {
        let mut headers = HeaderMap::new();
        assert_eq!(authenticate(&headers, "secret"), None);
        // wasmdyno:secret
        headers.insert(
            header::AUTHORIZATION,
            "Basic d2FzbWR5bm86c2VjcmV0".parse().unwrap(),
        );
        assert_eq!(
            authenticate(&headers, "secret").as_deref(),
            Some("wasmdyno")
        );
        assert_eq!(authenticate(&headers, "other"), None);
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(authenticate(&headers, "secret").is_some());
    }

    #[test]
    fn cgi_headers_end_at_a_blank_line() {
        assert_eq!(header_end(b"Status: 404\r\n\r\nbody"), Some((11, 15)));
        assert_eq!(header_end(b"A: b\n\nrest"), Some((4, 6)));
        assert_eq!(header_end(b"A: b\r\n"), None);
    }
}
