//! Spin applications' platform interfaces on a real node: the `spin-rs` guest (crates.io
//! `spin-sdk` 7, WASI 0.3) using `spin:key-value@3.0.0` on the node's store and
//! `spin:variables@3.0.0`; limits answered to the guest as errors; data kept across a
//! restart and a redeploy; variables from the manifest and the environment, secrets kept out
//! of status; imports Spark does not provide refused by name or linked as traps.

use std::time::Duration;

use serde_json::{Value, json};
use spark_testkit::{TestNode, get, guest, request};

const MANIFEST: &str = r#"
version = 1

[variables]
greeting = { default = "hello" }
token = { default = "s3cr3t-t0ken-value", secret = true }

[key_value.small]
max_value_size = "1KiB"
max_keys = 5
max_bytes = "4KiB"

[[module]]
id = "spin"
component = "{guest:spin-rs}"
routes = ["/spin/..."]
key_value_stores = ["default", "small"]
[module.variables]
message = "{{ greeting }}, world"
api_token = "Bearer {{ token }}"
[module.env]
VERSION = "1"
[module.rollout]
steps = [50, 100]
step_duration = "1h"
min_requests = 1000000

[[module]]
id = "other"
component = "{guest:spin-rs}"
routes = ["/other/..."]
"#;

async fn text(url: &str) -> (u16, String) {
    let reply = get(url).await.unwrap();
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_get_put_delete_and_keys_through_the_spin_sdk() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    assert_eq!(text(&node.url("/spin/kv/colour")).await.0, 404);
    let put = request("PUT", &node.url("/spin/kv/colour"), b"blue")
        .await
        .unwrap();
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        text(&node.url("/spin/kv/colour")).await,
        (200, "blue".into())
    );
    request("PUT", &node.url("/spin/kv/shape"), b"round")
        .await
        .unwrap();
    assert_eq!(
        text(&node.url("/spin/keys")).await,
        (200, "colour\nshape".into())
    );
    let del = request("DELETE", &node.url("/spin/kv/colour"), b"")
        .await
        .unwrap();
    assert_eq!(del.status, 200);
    assert_eq!(text(&node.url("/spin/kv/colour")).await.0, 404);
    // Stores are per label: `small` does not see `default`'s keys.
    assert_eq!(
        text(&node.url("/spin/keys?store=small")).await,
        (200, "".into())
    );
    // A label the module does not list, and a module that lists none.
    let (status, body) = text(&node.url("/spin/kv/x?store=secret")).await;
    assert_eq!(
        (status, body.as_str()),
        (500, "open error: Error::AccessDenied")
    );
    let (status, body) = text(&node.url("/other/kv/x")).await;
    assert_eq!(
        (status, body.as_str()),
        (500, "open error: Error::AccessDenied")
    );
    // Status shows each store's size and limits.
    let status: Value =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let module = status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "spin")
        .unwrap();
    let default = module["key_value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["label"] == "default")
        .unwrap();
    assert_eq!(default["keys"], 1, "{default}");
    assert_eq!(default["bytes"], "shape".len() + "round".len(), "{default}");
    assert_eq!(default["max_keys"], 10_000);
    assert_eq!(default["scope"], "-/default");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_over_its_limits_answers_the_guest_a_clear_error() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let big = vec![b'x'; 2048];
    let put = request("PUT", &node.url("/spin/kv/big?store=small"), &big)
        .await
        .unwrap();
    assert_eq!(put.status, 500);
    assert!(
        put.text().contains(
            "store 'small': a value of 2048 bytes is over the store's limit of 1024 bytes per value"
        ),
        "{}",
        put.text()
    );
    // Many keys: the sixth is refused, the five stay.
    let (status, body) = text(&node.url("/spin/fill?store=small&n=100&size=10")).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("wrote 5; set error: Error::Other(\"store 'small': the store is full: it holds its limit of 5 keys\")"), "{body}");
    // Bytes: 4 values of 1000 bytes would pass 4 KiB with the keys.
    for i in 0..5 {
        request(
            "DELETE",
            &node.url(&format!("/spin/kv/fill-{i}?store=small")),
            b"",
        )
        .await
        .unwrap();
    }
    let (status, body) = text(&node.url("/spin/fill?store=small&n=5&size=1000")).await;
    assert_eq!(status, 500);
    assert!(body.starts_with("wrote 4; set error:"), "{body}");
    assert!(body.contains("over its limit of 4096 bytes"), "{body}");
    // The node's host memory returns to rest after hostile writes.
    spark_testkit::wait_until(Duration::from_secs(10), "host memory at rest", || async {
        spark_runtime::host_memory_in_use() < 4 << 20
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_survives_a_restart_and_a_canary_shares_the_store() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    for n in 1..=3 {
        assert_eq!(text(&node.url("/spin/count")).await, (200, n.to_string()));
    }
    let dir = node.stop().await;
    let node = TestNode::start_in(MANIFEST, dir, spark_runtime::PoolingMode::Auto)
        .await
        .unwrap();
    assert_eq!(text(&node.url("/spin/count")).await, (200, "4".into()));
    // A new version as a canary (half the traffic): both versions count on one store.
    let digest = {
        let bytes = std::fs::read(guest("spin-rs")).unwrap();
        let digest = spark_store::Digest::of(&bytes).as_str().to_owned();
        let reply = node
            .admin("POST", &format!("/v1/artifacts/{digest}"), &bytes)
            .await
            .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        digest
    };
    let v2 = MANIFEST
        .replace("{guest:spin-rs}", &format!("sha256:{digest}"))
        .replace("VERSION = \"1\"", "VERSION = \"2\"");
    let body = serde_json::to_vec(&json!({ "manifest": v2, "note": "v2" })).unwrap();
    let reply = node.admin("POST", "/v1/deploy", &body).await.unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
    for n in 5..=24 {
        assert_eq!(text(&node.url("/spin/count")).await, (200, n.to_string()));
    }
    let reply = node
        .admin("POST", "/v1/rollout/abort", b"{}")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(text(&node.url("/spin/count")).await, (200, "25".into()));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_come_from_the_manifest_and_secrets_stay_out_of_status() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    assert_eq!(
        text(&node.url("/spin/var/message")).await,
        (200, "hello, world".into())
    );
    assert_eq!(
        text(&node.url("/spin/var/api_token")).await,
        (200, "Bearer s3cr3t-t0ken-value".into())
    );
    let (status, body) = text(&node.url("/spin/var/nope")).await;
    assert_eq!(status, 500);
    assert!(body.contains("Undefined"), "{body}");
    for path in ["/v1/status", "/v1/releases", "/v1/events"] {
        let reply = node.admin("GET", path, b"").await.unwrap();
        assert!(
            !reply.text().contains("s3cr3t-t0ken-value") || path == "/v1/releases",
            "{path} shows the secret"
        );
    }
    node.stop().await;
}

/// The same stores through `wasi:keyvalue@0.2.0-draft2` (atomics, paged listing) and the
/// same variables through `wasi:config/store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_keyvalue_and_wasi_config_reach_the_same_stores_and_variables() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    assert_eq!(
        text(&node.url("/spin/wkv/incr?by=5")).await,
        (200, "5".into())
    );
    assert_eq!(
        text(&node.url("/spin/wkv/incr?by=-2")).await,
        (200, "3".into())
    );
    request("PUT", &node.url("/spin/kv/a"), b"1").await.unwrap();
    assert_eq!(
        text(&node.url("/spin/wkv/keys")).await,
        (200, "a\nhits".into())
    );
    // 1,200 keys come back over two pages.
    let filled = text(&node.url("/spin/fill?n=1200&size=1")).await;
    assert_eq!(filled, (200, "wrote 1200".into()));
    let (status, keys) = text(&node.url("/spin/wkv/keys")).await;
    assert_eq!(status, 200);
    assert_eq!(keys.lines().count(), 1202);
    let (status, body) = text(&node.url("/spin/wkv/keys?store=nope")).await;
    assert_eq!(
        (status, body.as_str()),
        (500, "open error: Error::AccessDenied")
    );
    assert_eq!(
        text(&node.url("/spin/config/message")).await,
        (200, "hello, world".into())
    );
    node.stop().await;
}

/// A required variable with no value refuses the start, naming it and how to set it (the
/// environment's override is tested on the `spark` binary, whose environment a test sets).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_variable_without_a_value_refuses_the_start() {
    let manifest = MANIFEST
        .replace(
            "greeting = { default = \"hello\" }",
            "greeting = { default = \"hello\" }\nnode_test_required = { required = true }",
        )
        .replace("{{ greeting }}", "{{ greeting }}-{{ node_test_required }}");
    let error = TestNode::start(&manifest).await.err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains("application variable 'node_test_required' is required but has no value: set the environment variable SPARK_VARIABLE_NODE_TEST_REQUIRED"),
        "{message}"
    );
}

const SQLITE: &str = r#"
version = 1

[[module]]
id = "app"
component = "{guest:spin-rs-sqlite}"
routes = ["/..."]
key_value_stores = ["default"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_spark_does_not_provide_is_refused_by_name_or_traps_naming_it() {
    let error = TestNode::start(SQLITE).await.err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains(
            "component imports interfaces Spark does not provide: spin:sqlite/sqlite@3.1.0"
        ),
        "{message}"
    );
    let trapping = SQLITE.replace(
        "key_value_stores",
        "missing_imports = \"trap\"\nkey_value_stores",
    );
    let node = TestNode::start(&trapping).await.unwrap();
    // The rest of the component works; the missing interface traps when called.
    assert_eq!(text(&node.url("/count")).await, (200, "1".into()));
    let (status, body) = text(&node.url("/sqlite")).await;
    assert_eq!(status, 500);
    // The trap's message (in the node log) names the interface: "the component called
    // spin:sqlite/sqlite@3.1.0#[static]connection.open, but Spark does not provide ...".
    assert!(body.contains("trap"), "{body}");
    assert_eq!(
        node.node
            .snapshot()
            .module("app")
            .unwrap()
            .stats
            .snapshot()
            .traps,
        1
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_store_on_a_node_without_a_fleet_is_node_local() {
    let manifest = MANIFEST.replace("[key_value.small]\n", "[key_value.small]\nfleet = true\n");
    let node = TestNode::start(&manifest).await.unwrap();
    let put = request("PUT", &node.url("/spin/kv/k?store=small"), b"v")
        .await
        .unwrap();
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        text(&node.url("/spin/kv/k?store=small")).await,
        (200, "v".into())
    );
    let status: Value =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let stores = status["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "spin")
        .unwrap()["key_value"]
        .clone();
    let store = |label: &str| {
        stores
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["label"] == label)
            .unwrap()
            .clone()
    };
    assert_eq!(
        store("small")["fleet"],
        json!({"replicated": false, "dropped": 0, "refused": 0})
    );
    assert_eq!(store("small")["keys"], 1);
    assert!(store("default").get("fleet").is_none());
    node.stop().await;
}
