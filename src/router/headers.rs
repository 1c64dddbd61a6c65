//! Header work: host names, logfmt values, hop-by-hop headers, upgrades and request ids.

#[allow(unused_imports)]
use super::*;

/// A Host header's name: lowercase, without port or trailing dot (borrowed when it is that already).
pub(super) fn host_name(host: &str) -> std::borrow::Cow<'_, str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_end_matches('.');
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

/// A logfmt value: bare when it is one plain word (as Heroku logs `host=app.herokuapp.com`), else quoted with
/// `"` and `\` escaped and control characters shown escaped, so that a crafted `Host` cannot add fields or lines.
pub(super) fn logfmt_value(value: &str) -> std::borrow::Cow<'_, str> {
    // Byte by byte: a byte of a non-ASCII character is not ASCII-graphic either, so such a value is quoted.
    let plain = |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\');
    if !value.is_empty() && value.bytes().all(plain) {
        return value.into();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            c if c.is_control() => quoted.extend(c.escape_debug()),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted.into()
}

/// The request's fields of its router log line: `method=GET path="/" host=app.localhost request_id=... fwd="..."`.
/// The path has `"` written as `%22`, so that it cannot end the quoted value.
pub(super) fn request_fields(
    method: &hyper::Method,
    path: &str,
    host: &str,
    request_id: &str,
    fwd: &str,
) -> String {
    let host = logfmt_value(host);
    let mut fields = String::with_capacity(64 + path.len() + host.len() + request_id.len());
    for part in ["method=", method.as_str(), " path=\""] {
        fields.push_str(part);
    }
    for (i, part) in path.split('"').enumerate() {
        if i > 0 {
            fields.push_str("%22");
        }
        fields.push_str(part);
    }
    for part in [
        "\" host=",
        &host,
        " request_id=",
        request_id,
        " fwd=\"",
        fwd,
        "\"",
    ] {
        fields.push_str(part);
    }
    fields
}

/// Does the request ask to switch protocols (`Connection: upgrade` and an `Upgrade` header)?
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// The headers the router sets on every request it passes on, made once (a name parsed per request costs more than
/// the lookup it serves).
pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(super) const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub(super) const HTTP: HeaderValue = HeaderValue::from_static("http");
pub(super) const VIA_WASMDYNO: HeaderValue = HeaderValue::from_static("1.1 wasmdyno");
/// The headers that concern one connection only, besides `Connection` and `Upgrade` (kept for an upgrade) and
/// whatever `Connection` names.
static HOP_BY_HOP: [HeaderName; 5] = [
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Is this one of the headers that concern one connection only, whatever `Connection` names?
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION || name == header::UPGRADE || HOP_BY_HOP.contains(name)
}

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), keeping `Connection: upgrade` and
/// `Upgrade` when the connection is being upgraded.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most requests and responses have none: one look at each name, no removals to hash.
    if !upgrade && !headers.keys().any(hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

pub(super) fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The client's `X-Request-Id` if it is a sensible one (20 to 200 characters of `[A-Za-z0-9+=/-]`), else a new one.
/// Only those characters, so it is also valid text (`to_str`) for the log line.
pub(super) fn request_id(req: &Request<Incoming>) -> HeaderValue {
    if let Some(given) = req.headers().get(X_REQUEST_ID)
        && (20..=200).contains(&given.len())
        && given
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+=/-".contains(b))
    {
        return given.clone();
    }
    // Without randomness (never on the systems wasmdyno runs on) a request still gets an id, the nil UUID.
    let id =
        crate::ids::uuid_v4().unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into());
    HeaderValue::from_maybe_shared(hyper::body::Bytes::from(id)).expect("a UUID is a header value")
}

/// Relays an upgraded connection (a WebSocket) both ways between the client and the dyno or host that agreed to
/// switch protocols, until either side closes.
pub(super) fn relay_upgraded(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
) {
    tokio::spawn(async move {
        if let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) {
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
}

/// The `content-length` a request or response declares, if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
