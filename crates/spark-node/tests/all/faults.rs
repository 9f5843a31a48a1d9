//! A guest that traps, loops, eats memory, overflows its stack or floods its body gets a clear
//! status for that one request; the node and every other module keep serving.

use std::time::{Duration, Instant};

use spark_testkit::{TestNode, get};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]
priority = "critical"

[[module]]
id = "faults"
component = "{guest:faults}"
routes = ["/faults/..."]
[module.limits]
memory = "32MiB"
timeout = "20s"
cpu_time = "500ms"
response_body = "1MiB"

[[module]]
id = "spinner"
component = "{guest:faults}"
routes = ["/spinner/..."]
[module.limits]
timeout = "1s"
cpu_time = "60s"
"#;

async fn assert_neighbours_fine(node: &TestNode) {
    let hello = get(&node.url("/hello")).await.unwrap();
    assert_eq!(
        (hello.status, hello.text().as_str()),
        (200, "Hello from Spark!\n")
    );
    assert_eq!(
        get(&node.url("/faults/ok")).await.unwrap().status,
        200,
        "the faulty module itself recovers"
    );
}

fn stats(node: &TestNode, id: &str) -> spark_runtime::StatsSnapshot {
    node.node.snapshot().module(id).unwrap().stats.snapshot()
}

#[tokio::test]
async fn a_trap_is_a_500_for_that_request_only() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let trap = get(&node.url("/faults/trap")).await.unwrap();
    assert_eq!(trap.status, 500);
    assert!(trap.text().contains("trap"), "{}", trap.text());
    assert_eq!(stats(&node, "faults").traps, 1);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn an_endless_loop_hits_its_cpu_limit_while_others_keep_serving() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let url = node.url("/faults/loop");
    let started = Instant::now();
    let looping = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While the guest spins, a critical neighbour is served promptly.
    let during = Instant::now();
    assert_eq!(get(&node.url("/hello")).await.unwrap().status, 200);
    assert!(
        during.elapsed() < Duration::from_millis(400),
        "neighbour waited {:?}",
        during.elapsed()
    );
    let reply = looping.await.unwrap().unwrap();
    assert_eq!(reply.status, 504);
    assert!(reply.text().contains("CPU time limit"), "{}", reply.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "preempted at its limit, took {:?}",
        started.elapsed()
    );
    assert_eq!(stats(&node, "faults").cpu_limits, 1);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn an_endless_loop_hits_its_wall_clock_limit() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let started = Instant::now();
    let reply = get(&node.url("/spinner/loop")).await.unwrap();
    assert_eq!(reply.status, 504);
    assert!(
        reply.text().contains("time limit of 1s"),
        "{}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(stats(&node, "spinner").timeouts, 1);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn allocating_past_the_memory_limit_fails_cleanly() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let small = get(&node.url("/faults/alloc?mb=4")).await.unwrap();
    assert_eq!(small.status, 200, "{}", small.text());
    let big = get(&node.url("/faults/alloc?mb=64")).await.unwrap();
    assert_eq!(big.status, 500);
    assert!(big.text().contains("memory limit"), "{}", big.text());
    assert_eq!(stats(&node, "faults").memory_limits, 1);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn a_stack_overflow_fails_cleanly() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let reply = get(&node.url("/faults/stack")).await.unwrap();
    assert_eq!(reply.status, 500);
    assert!(reply.text().contains("stack"), "{}", reply.text());
    assert_eq!(stats(&node, "faults").stack_overflows, 1);
    // Rust keeps address-taken locals on a shadow stack in linear memory; overflowing that
    // is an out-of-bounds trap, also a clean 500.
    let shadow = get(&node.url("/faults/stack-shadow")).await.unwrap();
    assert_eq!(shadow.status, 500);
    assert_eq!(stats(&node, "faults").traps, 1);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}

#[tokio::test]
async fn a_huge_body_is_cut_at_the_limit() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    // Declared up front: refused before any byte is sent.
    let declared = get(&node.url("/faults/huge-declared?mb=64")).await.unwrap();
    assert_eq!(declared.status, 500);
    assert!(
        declared.text().contains("exceeds the module's limit"),
        "{}",
        declared.text()
    );
    // Streamed: the response is aborted once past the limit, so the client never sees a
    // complete body.
    match get(&node.url("/faults/huge?mb=64")).await {
        Err(error) => assert!(error.to_string().contains("body"), "{error:?}"),
        Ok(reply) => panic!(
            "a truncated body must not look complete ({} bytes)",
            reply.body.len()
        ),
    }
    assert_eq!(stats(&node, "faults").body_limits, 1);
    // Within the limit, streaming works.
    let small = get(&node.url("/faults/huge?mb=0")).await.unwrap();
    assert_eq!(small.status, 200);
    assert_neighbours_fine(&node).await;
    node.stop().await;
}
