//! A component is compiled once; a restarted node loads the authenticated artifact instead,
//! and an artifact that was tampered with is never loaded. These run with tiering off (the
//! module's `tiering = false`): exactly the node as it was before tiers; `tiering.rs` covers
//! the tiered loads.

use spark_runtime::{CodeSource, PoolingMode};
use spark_testkit::{TestNode, get};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "catalogue"
component = "{guest:big}"
routes = ["/..."]
tiering = false
"#;

fn source(node: &TestNode) -> CodeSource {
    node.node
        .snapshot()
        .module("catalogue")
        .unwrap()
        .info()
        .report
        .source
}

fn artifacts(node_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(node_dir.join("data/aot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

#[tokio::test]
async fn restart_loads_from_cache_and_tampering_forces_a_recompile() {
    let first = TestNode::start(MANIFEST).await.unwrap();
    assert_eq!(source(&first), CodeSource::Compiled);
    assert_eq!(
        get(&first.url("/search?q=kettle")).await.unwrap().status,
        200
    );
    let dir = first.stop().await;

    // A restart registers the module without loading it (its code is cached): its first
    // request loads it.
    let second = TestNode::start_in(MANIFEST, dir, PoolingMode::Auto)
        .await
        .unwrap();
    let reply = get(&second.url("/search?q=kettle")).await.unwrap();
    assert!(reply.text().contains("Kettle"), "{}", reply.text());
    assert_eq!(
        source(&second),
        CodeSource::AotCache,
        "a restarted node must not recompile"
    );
    let dir = second.stop().await;

    let files = artifacts(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();

    let third = TestNode::start_in(MANIFEST, dir, PoolingMode::Auto)
        .await
        .unwrap();
    assert_eq!(
        get(&third.url("/search?q=kettle")).await.unwrap().status,
        200
    );
    assert_eq!(
        source(&third),
        CodeSource::Compiled,
        "a tampered artifact is recompiled, not loaded"
    );
    let dir = third.stop().await;

    let fourth = TestNode::start_in(MANIFEST, dir, PoolingMode::Auto)
        .await
        .unwrap();
    assert_eq!(
        get(&fourth.url("/search?q=kettle")).await.unwrap().status,
        200
    );
    assert_eq!(
        source(&fourth),
        CodeSource::AotCache,
        "the recompiled artifact replaced the bad one"
    );
    fourth.stop().await;
}

#[tokio::test]
async fn on_demand_allocation_serves_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_in(MANIFEST, dir, PoolingMode::Off)
        .await
        .unwrap();
    assert!(matches!(
        node.node.runtime.allocation(),
        spark_runtime::Allocation::OnDemand { .. }
    ));
    let reply = get(&node.url("/thumb?size=16")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[1..4], b"PNG");
    node.stop().await;
}

/// Modules sharing one component on first start (empty AOT cache): it is compiled once and
/// its code is in memory once, however many modules use it.
#[tokio::test]
async fn identical_components_compile_once_however_many_modules_use_them() {
    let mut manifest = String::from("version = 1\n");
    for i in 0..24 {
        manifest.push_str(&format!(
            "\n[[module]]\nid = \"copy-{i}\"\ncomponent = \"{{guest:big}}\"\nroutes = [\"/copy-{i}/...\"]\ntiering = false\n"
        ));
    }
    let node = TestNode::start(&manifest).await.unwrap();
    let sources: Vec<CodeSource> = node
        .node
        .snapshot()
        .modules
        .iter()
        .map(|slot| slot.info().report.source)
        .collect();
    let compiled = sources
        .iter()
        .filter(|s| **s == CodeSource::Compiled)
        .count();
    assert_eq!(compiled, 1, "{sources:?}");
    assert_eq!(
        sources.iter().filter(|s| **s == CodeSource::Shared).count(),
        23,
        "{sources:?}"
    );
    assert_eq!(artifacts(node.dir.path()).len(), 1, "one artifact on disk");
    assert_eq!(
        get(&node.url("/copy-17/search?q=kettle"))
            .await
            .unwrap()
            .status,
        200
    );
    node.stop().await;
}
