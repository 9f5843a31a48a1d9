//! A node refuses to start on a bad component, naming the module and what is wrong with it.

use spark_node::NodeError;
use spark_testkit::{TestNode, guest};

fn manifest_with(component: &std::path::Path, routes: &str) -> String {
    format!(
        "version = 1\n[[module]]\nid = \"app\"\ncomponent = \"{}\"\n{routes}\n",
        component.display()
    )
}

async fn refusal(component_bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.wasm");
    std::fs::write(&path, component_bytes).unwrap();
    let error = TestNode::start(&manifest_with(&path, "routes = [\"/...\"]"))
        .await
        .err()
        .expect("startup must fail");
    assert!(matches!(error, NodeError::Modules(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("module 'app'"), "{message}");
    message
}

#[tokio::test]
async fn a_file_that_is_not_wasm() {
    let message = refusal(b"#!/bin/sh\necho hello\n").await;
    assert!(message.contains("is not a WebAssembly file"), "{message}");
}

#[tokio::test]
async fn a_core_module_where_a_component_is_expected() {
    let message = refusal(&wat::parse_str("(module (func (export \"run\")))").unwrap()).await;
    assert!(
        message.contains("is a core WebAssembly module, not a component"),
        "{message}"
    );
}

#[tokio::test]
async fn a_truncated_component() {
    let bytes = std::fs::read(guest("hello")).unwrap();
    let message = refusal(&bytes[..bytes.len() / 2]).await;
    assert!(message.contains("is not a valid component"), "{message}");
}

#[tokio::test]
async fn a_component_importing_what_the_node_does_not_provide() {
    let component = wat::parse_str(
        r#"(component (import "acme:fancy/thing@1.0.0" (instance (export "go" (func)))))"#,
    )
    .unwrap();
    let message = refusal(&component).await;
    assert!(
        message.contains("imports something this node does not provide"),
        "{message}"
    );
    assert!(message.contains("acme:fancy/thing"), "{message}");
}

#[tokio::test]
async fn a_component_of_the_wrong_world() {
    let message = refusal(&std::fs::read(guest("inventory-sync")).unwrap()).await;
    assert!(
        message.contains("must export wasi:http/incoming-handler"),
        "{message}"
    );
    assert!(
        message.contains("wasi:cli/run"),
        "it lists what the component does export: {message}"
    );
}

#[tokio::test]
async fn every_failure_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();
    let manifest = format!(
        "version = 1\n[[module]]\nid = \"one\"\ncomponent = \"{0}\"\nroutes = [\"/one\"]\n\
         [[module]]\nid = \"two\"\ncomponent = \"{0}\"\nroutes = [\"/two\"]\n\
         [[module]]\nid = \"fine\"\ncomponent = \"{1}\"\nroutes = [\"/fine\"]\n",
        junk.display(),
        guest("hello").display()
    );
    let message = TestNode::start(&manifest)
        .await
        .err()
        .expect("startup must fail")
        .to_string();
    assert!(
        message.starts_with("2 module(s) failed to load"),
        "{message}"
    );
    assert!(
        message.contains("module 'one'") && message.contains("module 'two'"),
        "{message}"
    );
}

#[tokio::test]
async fn a_failing_health_check_refuses_startup() {
    let manifest = format!(
        "version = 1\n[[module]]\nid = \"app\"\ncomponent = \"{}\"\nroutes = [\"/...\"]\nhealth = \"/trap\"\n",
        guest("faults").display()
    );
    let error = TestNode::start(&manifest)
        .await
        .err()
        .expect("startup must fail");
    let message = error.to_string();
    assert!(matches!(error, NodeError::Health { .. }), "{message}");
    assert!(
        message.contains("module 'app' failed its health check at /trap"),
        "{message}"
    );

    let healthy = manifest.replace("/trap", "/ok");
    TestNode::start(&healthy).await.unwrap().stop().await;
}
