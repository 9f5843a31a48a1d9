//! The live dashboard on the admin listener: a one-time login, a browser session, one page.
//!
//! - `POST /v1/dashboard/login` (bearer token only; `spark dashboard` calls it) mints a
//!   single-use login code valid for two minutes and answers the path to open.
//! - `GET /dashboard/login?code=...` redeems the code for a session: an HttpOnly,
//!   SameSite=Strict cookie holding a random id, valid for 12 hours; then redirects to
//!   `/dashboard`. A wrong, used or expired code gets a 401 page saying what to do.
//! - `GET /dashboard` serves the page (session or bearer token needed); its script polls
//!   `GET /v1/dashboard` ([`view`]) every second. The session cookie is accepted on the
//!   admin API's read endpoints (GET) only: changing anything still needs the bearer token.
//! - The page's script and style sheet are embedded in the binary (no build step, no CDN)
//!   and carry no node data, so they are served to anyone.
//!
//! Sessions live in memory ([`sessions`]), bounded; a node restart logs every browser out.

mod sessions;
pub(crate) mod view;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AdminState;
use view::{DashboardView, FleetPanel, OrchestratorPanel, Rates, Sample};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "spark_session";

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/dashboard.css");
const ICON: &str = include_str!("assets/icon.svg");

/// The page may load only its own script, style and data.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Login codes, sessions, the shared rate sampler and the fleet panel the agent fills.
#[derive(Debug, Default)]
pub(crate) struct DashboardState {
    sessions: Mutex<sessions::Sessions>,
    rates: Mutex<Rates>,
    /// Written by the fleet agent each time it reads the fleet's nodes.
    pub(crate) fleet: Mutex<Option<FleetPanel>>,
}

/// Routes behind the admin API's auth layer.
pub(super) fn api_routes() -> axum::Router<Arc<AdminState>> {
    axum::Router::new()
        .route("/v1/dashboard", get(data))
        .route("/v1/dashboard/login", post(mint_code))
}

/// Routes that check the session themselves (the page) or need none (login, assets).
pub(super) fn page_routes() -> axum::Router<Arc<AdminState>> {
    axum::Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/", get(page))
        .route("/dashboard/login", get(login))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/dashboard.css", get(style))
        .route("/dashboard/icon.svg", get(icon))
}

/// The session id in a request's `Cookie` headers, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// Whether the request carries a live dashboard session.
pub(crate) fn has_session(state: &AdminState, headers: &HeaderMap) -> bool {
    let Some(id) = session_cookie(headers) else {
        return false;
    };
    let now = state.clock.unix_ms();
    state
        .dashboard
        .sessions
        .lock()
        .expect("dashboard sessions")
        .valid(id, now)
}

/// 32 random bytes as hex.
fn secret() -> Result<String, spark_store::StoreError> {
    let bytes = spark_store::random_bytes::<32>()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The answer when the operating system's random source failed.
fn no_secret(error: &spark_store::StoreError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{}\n", spark_error::chain(error)),
    )
        .into_response()
}

/// What `POST /v1/dashboard/login` answers.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginCode {
    /// The single-use code.
    pub code: String,
    /// The path to open on the admin listener: `/dashboard/login?code=...`.
    pub path: String,
    /// Seconds the code stays valid.
    pub expires_in_secs: u64,
}

async fn mint_code(State(state): State<Arc<AdminState>>) -> Response {
    let code = match secret() {
        Ok(code) => code,
        Err(e) => return no_secret(&e),
    };
    let now = state.clock.unix_ms();
    state
        .dashboard
        .sessions
        .lock()
        .expect("dashboard sessions")
        .add_code(code.clone(), now);
    Json(LoginCode {
        path: format!("/dashboard/login?code={code}"),
        code,
        expires_in_secs: sessions::CODE_TTL_MS / 1000,
    })
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

async fn login(State(state): State<Arc<AdminState>>, Query(query): Query<LoginQuery>) -> Response {
    let session = match secret() {
        Ok(session) => session,
        Err(e) => return no_secret(&e),
    };
    let now = state.clock.unix_ms();
    let redeemed = state
        .dashboard
        .sessions
        .lock()
        .expect("dashboard sessions")
        .redeem(query.code.as_deref().unwrap_or(""), session.clone(), now);
    match redeemed {
        Ok(()) => {
            let cookie = format!(
                "{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                sessions::SESSION_TTL_MS / 1000
            );
            let mut response = (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, "/dashboard"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
            )
                .into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(sessions::Refused::UnknownOrExpired) => refusal(
            "This login link is not valid",
            "The code is wrong, was already used, or is older than two minutes. Each link \
             works once. Run <code>spark dashboard</code> again (with the same <code>--data-dir</code> \
             or <code>--admin</code> as before) and open the new link it prints.",
        ),
    }
}

/// A 401 page (static text only, never request data).
fn refusal(title: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Spark</title><link rel=\"stylesheet\" href=\"/dashboard/dashboard.css\">\
         <link rel=\"icon\" href=\"/dashboard/icon.svg\">\
         </head><body><main class=\"refusal\"><h1>{title}</h1><p>{detail}</p></main></body></html>\n"
    );
    html(StatusCode::UNAUTHORIZED, body)
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn page(State(state): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if has_session(&state, &headers) || super::auth::authorized(bearer, &state.token) {
        html(StatusCode::OK, PAGE.to_owned())
    } else {
        refusal(
            "Log in to the Spark dashboard",
            "Run <code>spark dashboard</code> where the node runs (add <code>--data-dir</code> \
             or <code>--admin</code> if <code>spark status</code> needs them) and open the \
             one-time link it prints.",
        )
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

async fn data(State(state): State<Arc<AdminState>>) -> Response {
    let snapshot = state.snapshot.load();
    let now = state.clock.unix_ms();
    let modules = super::status::modules(&snapshot, &state.warmth.state());
    let control = state
        .orchestrator
        .as_deref()
        .map(|view| (view.state(), view.cost()));
    let cpus = control
        .as_ref()
        .and_then(|(s, _)| s.signals.as_ref().map(|s| s.cpus))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    let sample = Sample {
        at_ms: now,
        modules: modules
            .iter()
            .map(|m| {
                let counters = view::Counters {
                    requests: m.requests.requests,
                    cpu_nanos: m.stats.cpu_nanos,
                };
                (m.id.clone(), counters)
            })
            .collect(),
    };
    let rates = state
        .dashboard
        .rates
        .lock()
        .expect("dashboard rates")
        .update(sample, cpus)
        .clone();
    let observations = control
        .as_ref()
        .map(|(s, _)| s.observations.as_slice())
        .unwrap_or_default();
    let rows = view::module_rows(&modules, &rates, observations);
    let orchestrator = control.as_ref().map(|(s, (_, ticks))| OrchestratorPanel {
        modes: view::mode_rows(&s.plan.modes),
        cpu: s.signals.as_ref().and_then(|s| s.cpu_utilisation),
        memory_pressure: s.signals.as_ref().and_then(|s| s.memory_pressure),
        ticks: *ticks,
        decisions: s
            .decisions
            .iter()
            .rev()
            .take(view::RECENT_DECISIONS)
            .map(spark_orchestrator::policy::DecisionText::from)
            .collect(),
    });
    let store = state.deployer.store().clone();
    let events = tokio::task::spawn_blocking(move || store.events(view::RECENT_EVENTS))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .map(|e| spark_api::EventView {
            at_ms: e.at_ms,
            kind: e.kind,
            release: e.release.map(|r| r.as_str().to_owned()),
            detail: e.detail,
        })
        .collect();
    let view = DashboardView {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.started.elapsed().as_secs(),
        at_ms: now,
        listen: state.listen.clone(),
        release: snapshot.release.clone(),
        modules: rows,
        canaries: super::status::canaries(&snapshot),
        orchestrator,
        rollout: state.deployer.rollout_status().await,
        events,
        fleet: state.dashboard.fleet.lock().expect("fleet panel").clone(),
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(view)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; spark_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
        let mut other = HeaderMap::new();
        other.append(
            header::COOKIE,
            HeaderValue::from_static("spark_sessionx=abc"),
        );
        assert_eq!(session_cookie(&other), None);
        assert_eq!(session_cookie(&HeaderMap::new()), None);
    }
}
