//! The release API: upload artifacts, deploy, follow and steer rollouts, roll back.
//!
//! `POST /v1/artifacts/{digest}` (body: the `.wasm`; refused unless it hashes to the digest),
//! `POST /v1/deploy` (a [`DeployRequest`]), `GET /v1/releases`, `GET /v1/rollout`,
//! `POST /v1/rollout/promote`, `POST /v1/rollout/abort`, `POST /v1/rollback`
//! (`{"release": "r3-..."}` or `{}` for the one before), `GET /v1/events`.
//! Every refusal is a status code with a sentence saying why. The request bodies and their
//! checks that need no node are [`spark_api`]'s.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use spark_api::{Actor, EventView, EventsQuery, RollbackRequest};

use super::AdminState;
use crate::release::deploy::{DeployError, DeployRequest, release_list};

/// Largest component accepted by an upload.
const MAX_ARTIFACT: usize = 512 << 20;

pub(super) fn routes() -> axum::Router<Arc<AdminState>> {
    axum::Router::new()
        .route(
            "/v1/artifacts/{digest}",
            post(upload).layer(DefaultBodyLimit::max(MAX_ARTIFACT)),
        )
        .route(
            "/v1/deploy",
            post(deploy).layer(DefaultBodyLimit::max(16 << 20)),
        )
        .route("/v1/releases", get(releases))
        .route("/v1/rollout", get(rollout))
        .route("/v1/rollout/promote", post(promote))
        .route("/v1/rollout/abort", post(abort))
        .route("/v1/rollback", post(rollback))
        .route("/v1/events", get(events))
}

/// The status code and, as the body, the error with every cause.
fn refusal(error: DeployError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, format!("{}\n", spark_error::chain(&error))).into_response()
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DeployError> + Send + 'static,
) -> Result<T, DeployError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(DeployError::Store(e.into())))
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Uploaded {
    pub digest: String,
    pub bytes: usize,
}

async fn upload(
    State(state): State<Arc<AdminState>>,
    Path(digest): Path<String>,
    body: Bytes,
) -> Response {
    let store = state.deployer.store().clone();
    let size = body.len();
    let result = blocking(move || {
        let expected = spark_store::Digest::parse(&digest).map_err(DeployError::Rejected)?;
        store
            .artifacts()
            .put_expecting(&body, &expected)
            .map_err(DeployError::Rejected)?;
        Ok(expected.as_str().to_owned())
    })
    .await;
    match result {
        Ok(digest) => (
            StatusCode::CREATED,
            Json(Uploaded {
                digest,
                bytes: size,
            }),
        )
            .into_response(),
        Err(e) => refusal(e),
    }
}

async fn deploy(
    State(state): State<Arc<AdminState>>,
    Json(request): Json<DeployRequest>,
) -> Response {
    match state.deployer.deploy(request).await {
        Ok(outcome) => (StatusCode::ACCEPTED, Json(outcome)).into_response(),
        Err(e) => refusal(e),
    }
}

async fn releases(State(state): State<Arc<AdminState>>) -> Response {
    let current = state.deployer.current().await;
    let store = state.deployer.store().clone();
    match blocking(move || release_list(&store, &current)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => refusal(e),
    }
}

/// How many recent events are searched for the last rollout's outcome.
const OUTCOME_LOOKBACK: usize = 200;

async fn rollout(State(state): State<Arc<AdminState>>) -> Response {
    let mut status = state.deployer.rollout_status().await;
    if status.rollout.is_none() {
        let store = state.deployer.store().clone();
        let last = blocking(move || {
            let events = store
                .events(OUTCOME_LOOKBACK)
                .map_err(|e| DeployError::Store(e.into()))?;
            Ok(events
                .into_iter()
                .find(|e| matches!(e.kind.as_str(), "promoted" | "rolled-back")))
        })
        .await;
        match last {
            Ok(event) => status.last_outcome = event.map(event_view),
            Err(e) => return refusal(e),
        }
    }
    Json(status).into_response()
}

fn event_view(e: spark_store::Event) -> EventView {
    EventView {
        at_ms: e.at_ms,
        kind: e.kind,
        release: e.release.map(|r| r.as_str().to_owned()),
        detail: e.detail,
    }
}

async fn promote(State(state): State<Arc<AdminState>>, body: Option<Json<Actor>>) -> Response {
    let by = body
        .and_then(|Json(a)| a.by)
        .unwrap_or_else(|| "admin API".into());
    match state.deployer.promote(&by).await {
        Ok(release) => Json(serde_json::json!({ "promoted": release })).into_response(),
        Err(e) => refusal(e),
    }
}

async fn abort(State(state): State<Arc<AdminState>>, body: Option<Json<Actor>>) -> Response {
    let by = body
        .and_then(|Json(a)| a.by)
        .unwrap_or_else(|| "admin API".into());
    match state.deployer.abort(&by).await {
        Ok(release) => Json(serde_json::json!({ "serving": release })).into_response(),
        Err(e) => refusal(e),
    }
}

async fn rollback(
    State(state): State<Arc<AdminState>>,
    body: Option<Json<RollbackRequest>>,
) -> Response {
    let target = body.and_then(|Json(r)| r.release);
    match state.deployer.rollback(target.as_deref()).await {
        Ok(release) => Json(serde_json::json!({ "serving": release })).into_response(),
        Err(e) => refusal(e),
    }
}

async fn events(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    let store = state.deployer.store().clone();
    let result = blocking(move || {
        let events = store
            .events(query.capped())
            .map_err(|e| DeployError::Store(e.into()))?;
        Ok(events.into_iter().map(event_view).collect::<Vec<_>>())
    })
    .await;
    match result {
        Ok(events) => Json(events).into_response(),
        Err(e) => refusal(e),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;
    use crate::release::deploy::store_error;

    #[tokio::test]
    async fn a_store_failure_is_a_500_that_keeps_the_io_error_and_says_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = spark_store::Store::open(dir.path()).unwrap();
        let artifacts = dir.path().join("artifacts");
        std::fs::remove_dir_all(&artifacts).unwrap();
        std::fs::write(&artifacts, b"a file where the artifacts go").unwrap();
        let error = store
            .artifacts()
            .put(b"\0asm\x0d\0\x01\0")
            .map_err(store_error)
            .unwrap_err();
        assert!(matches!(error, DeployError::Store(_)), "{error:?}");
        let io = error
            .source()
            .and_then(|cause| cause.downcast_ref::<spark_store::StoreError>())
            .and_then(|store| store.source())
            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
            .expect("store error, then the I/O error, as causes");
        let io = io.to_string();
        let response = refusal(error);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with("store: "), "{text}");
        assert_eq!(text.matches(&io).count(), 1, "the cause once: {text}");
    }
}
