//! Fuzz target `admin_bodies`: what a client sends the admin API, read as the node reads it.
//!
//! Every input is tried as each body: `POST /v1/deploy` ([`DeployRequest`], then its checks
//! that need no node, [`DeployRequest::check`]: the manifest and every module's digest),
//! `POST /v1/rollback` ([`RollbackRequest`], then [`release_number`]), the promote and abort
//! bodies ([`Actor`]), all JSON as axum's `Json` reads them (`serde_json::from_slice`), and the
//! query of `GET /v1/events` ([`EventsQuery`], url-encoded as axum's `Query` reads it).
//!
//! Why not the real router end to end: `spark_node::admin::router` needs an `AdminState`
//! whose `Deployer` builds modules with Wasmtime, so this crate would build the whole node
//! (some 480 crates with coverage instrumentation) for a smoke step that must stay short. The
//! bodies and their checks live in `spark-api` for that reason; the node's handlers use exactly
//! these types and call exactly these checks before any I/O.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_api::{Actor, DeployRequest, EventsQuery, RollbackRequest, release_number};
use spark_manifest::ComponentRef;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<DeployRequest>(data) {
        deploy(&request);
    }
    if let Ok(RollbackRequest {
        release: Some(target),
    }) = serde_json::from_slice(data)
    {
        let _ = release_number(&target);
    }
    let _ = serde_json::from_slice::<Actor>(data);
    let _ = serde_urlencoded::from_bytes::<EventsQuery>(data);
});

fn deploy(request: &DeployRequest) {
    let checked = match request.check() {
        Ok(checked) => checked,
        Err(refusal) => {
            assert!(!refusal.to_string().is_empty(), "a refusal says why");
            return;
        }
    };
    assert_eq!(checked.modules.len(), checked.manifest.modules.len());
    for ((spec, digest), declared) in checked.modules.iter().zip(&checked.manifest.modules) {
        assert_eq!(spec.id, declared.id, "modules keep their order");
        assert_eq!(
            spec.component,
            ComponentRef::Artifact(digest.as_str().to_owned()),
            "module '{}' is served by the artifact it was checked with",
            spec.id
        );
        if let Some(given) = request.components.get(spec.id.as_str()) {
            assert_eq!(given, digest.as_str(), "the uploaded digest wins");
        }
    }
}
