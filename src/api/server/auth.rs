//! Who may call the API: the operator's token (or the dashboard's session made with it) for everything, the follower
//! token for releases and slugs.

#[allow(unused_imports)]
use super::*;

pub(super) async fn authenticate(
    State(platform): State<Arc<Platform>>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if same(given, &platform.token) {
        next.run(req).await
    } else if given.is_empty()
        && let Some(csrf) =
            dashboard::session_of(req.headers()).and_then(|id| platform.dashboard.csrf(&id))
    {
        // The dashboard's session cookie; its writes carry the session's CSRF token too.
        let reads = matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let sent = req
            .headers()
            .get(dashboard::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if reads || same(sent, &csrf) {
            next.run(req).await
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a change from the dashboard needs its session's X-CSRF-Token",
            )
            .into_response()
        }
    } else if !platform.follower_token.is_empty() && same(given, &platform.follower_token) {
        if follower_may(req.method(), req.uri().path()) {
            next.run(req).await
        } else {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the follower token reads apps' current releases and slugs only; use the API token",
            )
            .into_response()
        }
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token (the CLI reads it from $WASMDYNO_HOME/token)",
        )
        .into_response();
        let headers = response.headers_mut();
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        // A client without the token gets no kept-alive connection to hold open.
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// What the follower token may do: `GET /apps/{app}/current-release` and `GET /apps/{app}/slugs/{sha256}`.
pub(super) fn follower_may(method: &axum::http::Method, path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    method == axum::http::Method::GET
        && match parts.as_slice() {
            ["apps", app, "current-release"] => !app.is_empty(),
            ["apps", app, "slugs", sha] => !app.is_empty() && !sha.is_empty(),
            _ => false,
        }
}

/// Compares in constant time, so how long it takes says nothing about where a token differs.
fn same(given: &str, token: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}
