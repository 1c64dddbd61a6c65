//! Header work: host names, logfmt values, hop-by-hop headers, upgrades and request ids.

#[allow(unused_imports)]
use super::*;

/// A Host header's name: lowercase, without port or trailing dot.
pub(super) fn host_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A logfmt value: bare when it is one plain word (as Heroku logs `host=app.herokuapp.com`), else quoted with
/// `"` and `\` escaped and control characters shown escaped, so that a crafted `Host` cannot add fields or lines.
pub(super) fn logfmt_value(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| c.is_ascii_graphic() && !matches!(c, '"' | '=' | '\\');
    if !value.is_empty() && value.chars().all(plain) {
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

/// Removes the headers that concern one connection only (RFC 9110 §7.6.1), keeping `Connection: upgrade` and
/// `Upgrade` when the connection is being upgraded.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
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
    for name in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

pub(super) fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// The client's `X-Request-Id` if it is a sensible one (20 to 200 characters of `[A-Za-z0-9+=/-]`), else a new one.
pub(super) fn request_id(req: &Request<Incoming>) -> String {
    if let Some(given) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && (20..=200).contains(&given.len())
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=/-".contains(&b))
    {
        return given.to_string();
    }
    // Without randomness (never on the systems wasmdyno runs on) a request still gets an id, the nil UUID.
    crate::ids::uuid_v4().unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into())
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
