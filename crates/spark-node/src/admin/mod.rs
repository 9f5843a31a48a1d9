//! The admin listener, on its own port: `/healthz` and Prometheus `/metrics` open to
//! monitoring; behind the bearer token, `/v1/status`, `/v1/orchestrator` (telemetry, modes,
//! decisions), `/v1/predictor`, `POST /v1/jobs/{id}/run`, the release API ([`releases`]), and
//! the live dashboard ([`dashboard`]: a one-time login, then a session cookie that the read
//! endpoints (GET) accept in place of the token).
//!
//! Kept apart from application traffic so a saturated application port never hides the
//! node's health or metrics from the operator.

pub(crate) mod auth;
pub(crate) mod dashboard;
pub(crate) mod metrics;
mod releases;
pub(crate) mod status;

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::admin::metrics::SharedMetrics;
use crate::clock::Clock;
use crate::control::ControlView;
use crate::control::warmth::{WarmthState, WarmthView};
use crate::release::deploy::Deployer;
use crate::serve::capacity::NodeCapacity;
use crate::serve::jobs::{self, JobOutcome};
use crate::serve::snapshot::SharedSnapshot;
use status::NodeStatus;

/// What the admin handlers read.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub snapshot: SharedSnapshot,
    pub metrics: SharedMetrics,
    pub started: Instant,
    pub listen: String,
    pub admin: String,
    pub allocation: String,
    /// Tiered compilation on or off, and why (`status::tiering_label`).
    pub tiering: String,
    pub shutting_down: CancellationToken,
    pub capacity: Arc<NodeCapacity>,
    pub orchestrator: Option<Arc<ControlView>>,
    pub warmth: Arc<WarmthView>,
    pub deployer: Arc<Deployer>,
    /// The inference host (`None` without `[nn]`).
    pub nn: Option<spark_nn::NnService>,
    /// Bearer token required on `/v1/*`.
    pub token: String,
    /// The node's clock (session and login-code expiry, dashboard rates).
    pub clock: Clock,
    /// Dashboard login codes, sessions and rates.
    pub dashboard: Arc<dashboard::DashboardState>,
}

pub(crate) fn router(state: AdminState) -> axum::Router {
    let state = Arc::new(state);
    let api = axum::Router::new()
        .route("/v1/status", get(node_status))
        .route("/v1/orchestrator", get(orchestrator))
        .route("/v1/predictor", get(predictor))
        .route("/v1/jobs/{id}/run", post(run_job))
        .merge(releases::routes())
        .merge(dashboard::api_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(dashboard::page_routes())
        .with_state(state)
}

/// `/v1/*` needs `Authorization: Bearer <token>` (the token in `<data_dir>/admin.token`); a
/// read (GET) may instead carry a live dashboard session cookie.
async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let read = request.method() == axum::http::Method::GET;
    if auth::authorized(header, &state.token)
        || (read && dashboard::has_session(&state, request.headers()))
    {
        next.run(request).await
    } else {
        (StatusCode::UNAUTHORIZED, "missing or wrong admin token (Authorization: Bearer <token from <data_dir>/admin.token>)\n").into_response()
    }
}

async fn healthz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.shutting_down.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn node_status(State(state): State<Arc<AdminState>>) -> Json<NodeStatus> {
    let snapshot = state.snapshot.load();
    let warmth = state.warmth.state();
    Json(NodeStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_secs: state.started.elapsed().as_secs(),
        listen: state.listen.clone(),
        admin: state.admin.clone(),
        allocation: state.allocation.clone(),
        tiering: state.tiering.clone(),
        optimizer: snapshot
            .modules
            .first()
            .map(|slot| slot.residency.runtime().optimizer_status()),
        release: snapshot.release.clone(),
        modules: status::modules(&snapshot, &warmth),
        canaries: status::canaries(&snapshot),
        orchestrator: state
            .orchestrator
            .as_deref()
            .map(|view| status::orchestrator(view, 20)),
        nn: state.nn.as_ref().map(spark_nn::NnService::status),
        loaded_code: warmth.loaded_code,
    })
}

/// The orchestrator's view with its whole decision log.
async fn orchestrator(
    State(state): State<Arc<AdminState>>,
) -> Result<Json<status::OrchestratorStatus>, (StatusCode, &'static str)> {
    match &state.orchestrator {
        Some(view) => Ok(Json(status::orchestrator(view, usize::MAX))),
        None => Err((
            StatusCode::NOT_FOUND,
            "the orchestrator is off on this node\n",
        )),
    }
}

/// The warmth controller's view: budget, per-module level, target and forecast, eviction order.
async fn predictor(State(state): State<Arc<AdminState>>) -> Json<WarmthState> {
    Json(state.warmth.state())
}

async fn run_job(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<JobOutcome>, (StatusCode, String)> {
    let slot = state.snapshot.load().module(&id).cloned();
    let Some(slot) = slot else {
        return Err((StatusCode::NOT_FOUND, format!("no module '{id}'\n")));
    };
    if !matches!(slot.spec.trigger, spark_manifest::Trigger::Schedule { .. }) {
        return Err((
            StatusCode::CONFLICT,
            format!("module '{id}' is not a job\n"),
        ));
    }
    Ok(Json(jobs::run_once(&slot, &state.capacity).await))
}
