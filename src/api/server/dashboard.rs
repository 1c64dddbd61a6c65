//! `/dashboard`: the web dashboard, its assets embedded in the binary, and its sessions. One logs in with the API
//! token and gets a session cookie (HttpOnly, SameSite=Strict, 12 hours); the page then calls the API itself
//! with that cookie. A write made with a cookie must also carry the session's CSRF token in `X-CSRF-Token`,
//! which only the page that logged in knows.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
use super::*;

/// The session cookie's name.
pub(super) const COOKIE: &str = "wasmdyno_session";
/// The header a cookie-authenticated write carries.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most: the oldest goes first.
const MAX_SESSIONS: usize = 256;

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// The dashboard's sessions: id → (CSRF token, when it ends).
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, (String, Instant)>>);

impl Sessions {
    fn create(&self) -> Result<(String, String), ApiError> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let mut sessions = self.0.lock().expect("sessions");
        let now = Instant::now();
        sessions.retain(|_, (_, ends)| *ends > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, ends))| *ends)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), (csrf.clone(), now + LIFETIME));
        Ok((id, csrf))
    }

    /// The CSRF token of the live session `id`.
    pub(super) fn csrf(&self, id: &str) -> Option<String> {
        let sessions = self.0.lock().expect("sessions");
        let (csrf, ends) = sessions.get(id)?;
        (*ends > Instant::now()).then(|| csrf.clone())
    }

    fn end(&self, id: &str) {
        self.0.lock().expect("sessions").remove(id);
    }
}

fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// The session id a request's cookie names, if any.
pub(super) fn session_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

/// The dashboard's routes, outside the token check (the login page must load without one).
pub(super) fn routes() -> Router<Arc<Platform>> {
    Router::new()
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/dashboard/session",
            get(current_session).post(log_in).delete(log_out),
        )
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    let mut response = Response::new(Body::from(text));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[derive(Deserialize)]
pub(super) struct LogIn {
    token: String,
}

/// What the page needs besides the API: its CSRF token, and where the router serves apps.
fn session_body(p: &Platform, csrf: String) -> serde_json::Value {
    let template = crate::api::Announcement::read(&p.home).and_then(|a| a.app_url("{app}"));
    serde_json::json!({ "csrf": csrf, "app_url": template })
}

async fn log_in(State(p): State<Arc<Platform>>, Json(request): Json<LogIn>) -> ApiResult<Response> {
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        request.token.as_bytes(),
        p.token.as_bytes(),
    )) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong API token (the CLI keeps it in $WASMDYNO_HOME/token)",
        ));
    }
    let (id, csrf) = p.dashboard.create()?;
    let mut response = Json(session_body(&p, csrf)).into_response();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        LIFETIME.as_secs()
    );
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a hex id makes a valid cookie"),
    );
    Ok(response)
}

async fn current_session(
    State(p): State<Arc<Platform>>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    match session_of(&headers).and_then(|id| p.dashboard.csrf(&id)) {
        Some(csrf) => Ok(Json(session_body(&p, csrf)).into_response()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not logged in",
        )),
    }
}

async fn log_out(State(p): State<Arc<Platform>>, headers: axum::http::HeaderMap) -> Response {
    if let Some(id) = session_of(&headers) {
        p.dashboard.end(&id);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        ))
        .expect("a valid cookie"),
    );
    response
}
