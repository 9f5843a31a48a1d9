//! WASI 0.3 HTTP components (`wasi:http/handler@0.3.0`, component-model async) served beside
//! WASI 0.2 ones: the `http-p3` guest (and its build against the 0.3 release candidate),
//! real HTTP/1 and HTTP/2, one instance taking several requests within its module's bound,
//! and every limit holding when clients leave or the guest never finishes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use spark_testkit::{TestNode, get, metric, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANIFEST: &str = r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_instances = 64

[[module]]
id = "hello"
component = "{guest:hello}"
routes = ["/hello"]
priority = "critical"

[[module]]
id = "p3"
component = "{guest:http-p3}"
routes = ["/p3/..."]
[module.limits]
max_concurrent_per_instance = 4
response_body = "2GiB"
timeout = "2s"
cpu_time = "500ms"
host_memory = "8MiB"
resources = 4000

[[module]]
id = "solo"
component = "{guest:http-p3}"
routes = ["/solo/..."]
[module.limits]
max_concurrent_per_instance = 1

[[module]]
id = "reuse"
component = "{guest:http-p3}"
routes = ["/reuse/..."]
[module.limits]
max_concurrent_per_instance = 4
max_requests_per_instance = 3
instance_idle_timeout = "400ms"
memory = "64MiB"
host_memory = "8MiB"

[[module]]
id = "rc"
component = "{guest:http-p3-rc}"
routes = ["/rc/..."]

[[module]]
id = "capped"
component = "{guest:http-p3}"
routes = ["/capped/..."]
[module.limits]
memory = "32MiB"
response_body = "1MiB"
request_body = "256KiB"
max_concurrent_per_instance = 4
# CPU time well below the wall clock: on a loaded machine a spinning guest still reaches
# its CPU limit before its deadline.
cpu_time = "500ms"
timeout = "20s"
"#;

fn stats(node: &TestNode, id: &str) -> spark_runtime::StatsSnapshot {
    node.node.snapshot().module(id).unwrap().stats.snapshot()
}

/// The `/sleep` answer: which instance served it and the most requests it had at once.
fn instance_of(text: &str) -> (String, u32) {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
            .to_owned()
    };
    (field("instance="), field("peak=").parse().unwrap())
}

/// Waits until `module` has nothing running, queued or in flight, and no instance open.
async fn idle(node: &TestNode, module: &str) {
    let slot = node.node.snapshot().module(module).cloned().unwrap();
    spark_testkit::wait_until(Duration::from_secs(10), "the module is idle", || {
        let slot = slot.clone();
        async move {
            let s = slot.stats.snapshot();
            slot.admission.running() == 0
                && slot.admission.queued() == 0
                && s.in_flight == 0
                && s.shared_instances == 0
        }
    })
    .await;
}

/// Waits until `module` is idle and the node holds nothing for it: no node slot, no memory
/// reserved, and (nearly) no host memory held by guests. On a timeout it says which gauge did
/// not come back (host memory is counted for the whole process: other tests' guests in it).
async fn everything_given_back(node: &TestNode, module: &str) {
    idle(node, module).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = get(&node.admin_url("/metrics")).await.unwrap().text();
        let gauge = |name: &str| metric(&page, name).unwrap_or_else(|| panic!("no {name}"));
        let (slots, reserved, host) = (
            gauge("spark_node_slots_in_use"),
            gauge("spark_node_memory_reserved_bytes"),
            gauge("spark_host_memory_bytes"),
        );
        if slots == 0.0 && reserved == 0.0 && host < f64::from(1 << 20) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node's gauges not at rest after 10 s: {slots} slots in use, {reserved} bytes reserved, {host} bytes of host memory held by guests (in this whole test process)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_wasi_03_component_is_served_beside_a_wasi_02_one() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let hello = get(&node.url("/hello")).await.unwrap();
    assert_eq!(hello.text(), "Hello from Spark!\n");
    let p3 = get(&node.url("/p3/")).await.unwrap();
    assert_eq!(p3.status, 200, "{}", p3.text());
    assert!(
        p3.text().starts_with("Hello from a WASI 0.3 component!"),
        "{}",
        p3.text()
    );
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let echoed = post(&node.url("/p3/echo"), &body).await.unwrap();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "the body streams back unchanged");
    let big = get(&node.url("/p3/big?bytes=5000000")).await.unwrap();
    assert_eq!((big.status, big.body.len()), (200, 5_000_000));

    // Built against the 0.3 release candidate: linked to the same implementation.
    let rc = get(&node.url("/rc/")).await.unwrap();
    assert_eq!(rc.status, 200, "{}", rc.text());
    assert!(rc.text().starts_with("Hello from a WASI 0.3 component!"));

    let status: spark_node::NodeStatus =
        serde_json::from_slice(&node.admin("GET", "/v1/status", b"").await.unwrap().body).unwrap();
    let world = |id: &str| {
        let m = status.modules.iter().find(|m| m.id == id).unwrap();
        (m.world.clone(), m.limits.max_concurrent_per_instance)
    };
    assert_eq!(world("hello"), ("wasi:http/proxy".to_owned(), 1));
    assert_eq!(world("p3"), ("wasi:http/service".to_owned(), 4));
    assert_eq!(world("rc"), ("wasi:http/service".to_owned(), 16));
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(
        page.contains(r#"world="wasi:http/service""#),
        "the module's world is in its info series"
    );
    assert!(
        page.contains("spark_module_shared_instances{"),
        "the shared-instance gauge is exported"
    );
    assert!(
        page.contains("spark_guest_shared_requests_total{"),
        "the shared-request counter is exported"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_serves_several_requests_at_once_within_its_bound() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let started = Instant::now();
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let url = node.url("/p3/sleep?ms=400");
            tokio::spawn(async move { get(&url).await.unwrap() })
        })
        .collect();
    let mut per_instance: HashMap<String, u32> = HashMap::new();
    let mut most = 0;
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let (instance, peak) = instance_of(&reply.text());
        *per_instance.entry(instance).or_default() += 1;
        most = most.max(peak);
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "12 sleeps of 400 ms overlapped: {:?}",
        started.elapsed()
    );
    assert!(
        most <= 4,
        "an instance had {most} requests at once (bound 4)"
    );
    assert!(most >= 2, "requests shared an instance: {per_instance:?}");
    assert!(
        per_instance.values().all(|&n| n <= 4),
        "no instance served more than 4 in its life: {per_instance:?}"
    );
    assert!(per_instance.len() >= 3, "{per_instance:?}");
    let s = stats(&node, "p3");
    assert!(s.shared_requests >= 1, "{s:?}");
    assert_eq!(s.invocations, 12);
    idle(&node, "p3").await;

    // A module bound to 1: a fresh instance per request.
    let solo: Vec<_> = (0..4)
        .map(|_| {
            let url = node.url("/solo/sleep?ms=200");
            tokio::spawn(async move { get(&url).await.unwrap().text() })
        })
        .collect();
    let mut instances = Vec::new();
    for reply in solo {
        let (instance, peak) = instance_of(&reply.await.unwrap());
        assert_eq!(peak, 1);
        instances.push(instance);
    }
    instances.sort();
    instances.dedup();
    assert_eq!(instances.len(), 4, "one instance each");
    assert_eq!(stats(&node, "solo").shared_requests, 0);
    node.stop().await;
}

/// One request after another never shares an instance: an instance that went idle takes no
/// more requests, so nothing of one request's state reaches the next.
#[tokio::test]
async fn an_idle_instance_is_never_reused() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let reply = get(&node.url("/p3/sleep?ms=1")).await.unwrap();
        seen.push(instance_of(&reply.text()).0);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "{seen:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_share_an_instance_too() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let replies: Vec<_> = (0..4)
        .map(|_| {
            let mut sender = sender.clone();
            let request = http::Request::get(node.url("/p3/sleep?ms=300"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            tokio::spawn(async move {
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let body = response.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8(body.to_vec()).unwrap()
            })
        })
        .collect();
    let mut most = 0;
    for reply in replies {
        most = most.max(instance_of(&reply.await.unwrap()).1);
    }
    assert!((2..=4).contains(&most), "peak {most}");
    idle(&node, "p3").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_gives_its_slot_back() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    // HTTP/1: read part of an endless-looking body, then hang up.
    let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /p3/big?bytes=1000000000 HTTP/1.1\r\nHost: spark\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let mut read = 0;
    while read < 200_000 {
        read += stream.read(&mut buf).await.unwrap();
    }
    assert_eq!(
        node.node
            .snapshot()
            .module("p3")
            .unwrap()
            .admission
            .running(),
        1
    );
    drop(stream);
    everything_given_back(&node, "p3").await;
    assert!(stats(&node, "p3").cancelled >= 1);

    // HTTP/2: a stream reset mid-body, with another request on the same instance going on.
    let tcp = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let get2 = |path: &str| {
        let mut sender = sender.clone();
        let request = http::Request::get(node.url(path))
            .body(Empty::<Bytes>::new())
            .unwrap();
        async move { sender.send_request(request).await.unwrap() }
    };
    let sleeper = tokio::spawn(get2("/p3/sleep?ms=600"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut big = get2("/p3/big?bytes=1000000000").await.into_body();
    let mut got = 0;
    while got < 200_000 {
        let frame = big.frame().await.unwrap().unwrap();
        got += frame.data_ref().map_or(0, Bytes::len);
    }
    drop(big);
    let sleeper = sleeper.await.unwrap();
    assert_eq!(
        sleeper.status(),
        200,
        "its neighbour on the instance is unharmed"
    );
    let text = sleeper.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("slept 600 ms"));
    everything_given_back(&node, "p3").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_ends_is_cut_at_the_timeout() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let started = Instant::now();
    let stalled = get(&node.url("/p3/stall")).await;
    assert!(
        stalled.is_err(),
        "the body is cut, never complete: {stalled:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut at the 2 s timeout: {took:?}"
    );
    idle(&node, "p3").await;
    assert_eq!(stats(&node, "p3").timeouts, 1);
    // A response that never comes is a 504 at the timeout.
    let never = get(&node.url("/p3/sleep?ms=60000")).await.unwrap();
    assert_eq!(never.status, 504, "{}", never.text());
    assert!(never.text().contains("time limit"), "{}", never.text());
    idle(&node, "p3").await;
    assert_eq!(get(&node.url("/hello")).await.unwrap().status, 200);
    everything_given_back(&node, "p3").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_for_wasi_03_guests() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let spin = get(&node.url("/capped/spin")).await.unwrap();
    assert_eq!(spin.status, 504, "{}", spin.text());
    assert!(spin.text().contains("CPU time limit"), "{}", spin.text());
    idle(&node, "capped").await;
    assert_eq!(stats(&node, "capped").cpu_limits, 1);

    let trap = get(&node.url("/p3/trap")).await.unwrap();
    assert_eq!(trap.status, 500);

    // 64 KiB header maps made in the host and held: past 8 MiB of host memory.
    let hoard = get(&node.url("/p3/hoard?n=1000")).await.unwrap();
    assert_eq!(hoard.status, 500, "{}", hoard.text());
    assert!(hoard.text().contains("host memory"), "{}", hoard.text());
    let small = get(&node.url("/p3/hoard?n=10")).await.unwrap();
    assert_eq!(small.status, 200, "{}", small.text());

    idle(&node, "p3").await;
    let s = stats(&node, "p3");
    assert_eq!((s.traps, s.host_memory_limits), (1, 1), "{s:?}");
    let ok = get(&node.url("/p3/")).await.unwrap();
    assert_eq!(ok.status, 200, "the module recovers");
    everything_given_back(&node, "p3").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_request_gives_everything_back() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let running = || {
        node.node
            .snapshot()
            .module("p3")
            .unwrap()
            .admission
            .running()
    };

    // HTTP/1: a body declared 10 MB long, 128 KiB of it sent while the guest reads it, then
    // the connection closed.
    let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    stream
        .write_all(b"POST /p3/count HTTP/1.1\r\nHost: spark\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&vec![b'x'; 128 << 10]).await.unwrap();
    spark_testkit::wait_until(Duration::from_secs(5), "the guest reads", || async {
        running() == 1
    })
    .await;
    drop(stream);
    everything_given_back(&node, "p3").await;
    // The guest saw its body fail and may answer (with an error) before the connection's
    // end cancels it: either way the request is over.
    let s = stats(&node, "p3");
    assert_eq!((s.invocations, s.in_flight), (1, 0), "{s:?}");

    // HTTP/1, chunked: the body echoed back while it arrives; the client leaves with both
    // directions open.
    let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    stream
        .write_all(b"POST /p3/echo HTTP/1.1\r\nHost: spark\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let chunk = [
        format!("{:x}\r\n", 64 << 10).into_bytes(),
        vec![b'y'; 64 << 10],
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut buf = vec![0u8; 256 << 10];
    let mut read = 0;
    while read < 100_000 {
        stream.write_all(&chunk).await.unwrap();
        read += stream.read(&mut buf).await.unwrap();
    }
    drop(stream);
    everything_given_back(&node, "p3").await;

    // HTTP/2: a request whose body stops arriving is reset while a neighbour on the same
    // instance sleeps; the neighbour is unharmed.
    let tcp = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let sleeper = {
        let mut sender = sender.clone();
        let request = http::Request::get(node.url("/p3/sleep?ms=800"))
            .body(http_body_util::Either::Left(Empty::<Bytes>::new()))
            .unwrap();
        tokio::spawn(async move { sender.send_request(request).await.unwrap() })
    };
    spark_testkit::wait_until(Duration::from_secs(5), "the sleeper runs", || async {
        running() == 1
    })
    .await;
    let (mut body_tx, chunks) = futures::channel::mpsc::channel::<Bytes>(4);
    let body = http_body_util::StreamBody::new(
        chunks.map(|chunk| Ok::<_, std::convert::Infallible>(http_body::Frame::data(chunk))),
    );
    let upload = {
        let mut sender = sender.clone();
        let request = http::Request::post(node.url("/p3/count"))
            .body(http_body_util::Either::Right(body))
            .unwrap();
        tokio::spawn(async move { sender.send_request(request).await })
    };
    body_tx
        .send(Bytes::from(vec![b'z'; 64 << 10]))
        .await
        .unwrap();
    spark_testkit::wait_until(
        Duration::from_secs(5),
        "both share the instance",
        || async { running() == 2 },
    )
    .await;
    assert!(
        stats(&node, "p3").shared_requests >= 1,
        "{:?}",
        stats(&node, "p3")
    );
    // Dropping the response future resets the stream.
    upload.abort();
    let _ = upload.await;
    drop(body_tx);
    let sleeper = sleeper.await.unwrap();
    assert_eq!(sleeper.status(), 200, "the neighbour is unharmed");
    let text = sleeper.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("slept 800 ms"));
    everything_given_back(&node, "p3").await;
    assert_eq!(get(&node.url("/p3/")).await.unwrap().status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_body_limits_hold_for_wasi_03_guests() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    // Linear memory: 32 MiB per instance.
    let small = get(&node.url("/capped/grow?mb=4")).await.unwrap();
    assert_eq!(small.status, 200, "{}", small.text());
    let big = get(&node.url("/capped/grow?mb=64")).await.unwrap();
    assert_eq!(big.status, 500, "{}", big.text());
    assert!(big.text().contains("memory limit"), "{}", big.text());
    assert_eq!(stats(&node, "capped").memory_limits, 1);

    // Response body: 1 MiB, streamed past it, is cut (the client never sees it complete).
    match get(&node.url("/capped/big?bytes=5000000")).await {
        Err(error) => assert!(error.to_string().contains("body"), "{error:?}"),
        Ok(reply) => panic!(
            "a truncated body must not look complete ({} bytes)",
            reply.body.len()
        ),
    }
    idle(&node, "capped").await;
    assert_eq!(stats(&node, "capped").body_limits, 1);
    let within = get(&node.url("/capped/big?bytes=500000")).await.unwrap();
    assert_eq!((within.status, within.body.len()), (200, 500_000));

    // Request body: 256 KiB. Declared past it, refused before any guest runs.
    let invocations = stats(&node, "capped").invocations;
    // (Only the head is sent: a client still writing a body the node has refused may get a
    // broken pipe instead of the answer, which would test the client, not the node.)
    let mut declared = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    declared
        .write_all(b"POST /capped/count HTTP/1.1\r\nHost: spark\r\nContent-Length: 1048576\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), declared.read(&mut head))
        .await
        .expect("an answer before the body, not a hang")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    drop(declared);
    assert_eq!(stats(&node, "capped").invocations, invocations);
    // Chunked past it: the guest reading it sees the body fail, never all of it.
    let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /capped/count HTTP/1.1\r\nHost: spark\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
    let chunk = [
        format!("{:x}\r\n", 64 << 10).into_bytes(),
        vec![b'y'; 64 << 10],
        b"\r\n".to_vec(),
    ]
    .concat();
    for _ in 0..16 {
        if stream.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut head))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 4") || head.starts_with("HTTP/1.1 5"),
        "{head}"
    );
    drop(stream);
    let within = post(&node.url("/capped/count"), &vec![b'x'; 200_000])
        .await
        .unwrap();
    assert_eq!(within.text(), "read 200000 bytes\n");
    everything_given_back(&node, "capped").await;
    node.stop().await;
}

/// Requests that share an instance reserve its linear memory once: the node's reservation is
/// one instance's memory per instance open plus each request's host memory, not a whole
/// invocation's per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sharing_an_instance_reserve_its_memory_once() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let requests: Vec<_> = (0..4)
        .map(|_| {
            let url = node.url("/p3/sleep?ms=1500");
            tokio::spawn(async move { get(&url).await.unwrap() })
        })
        .collect();
    let slot = node.node.snapshot().module("p3").cloned().unwrap();
    spark_testkit::wait_until(Duration::from_secs(10), "four in flight", || {
        let slot = slot.clone();
        async move { slot.stats.snapshot().in_flight == 4 }
    })
    .await;
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    let reserved = metric(&page, "spark_node_memory_reserved_bytes").unwrap() as u64;
    let slots = metric(&page, "spark_node_slots_in_use").unwrap() as u64;
    let mut instances = Vec::new();
    for request in requests {
        let reply = request.await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        instances.push(instance_of(&reply.text()).0);
    }
    instances.sort();
    instances.dedup();
    let open = instances.len() as u64;
    assert!(open < 4, "some requests shared an instance: {instances:?}");
    let (memory, host_memory) = (128u64 << 20, 8u64 << 20);
    assert_eq!(
        reserved,
        open * memory + 4 * host_memory,
        "{open} instance(s) for 4 requests"
    );
    assert_eq!(slots, open, "a node slot per instance, not per request");
    everything_given_back(&node, "p3").await;
    node.stop().await;
}

/// With an instance per request, a request that finds the node's memory held by its
/// predecessor's instance, answered and ending, waits the moment it takes to come back instead
/// of being refused; it is refused at once while the memory is held by work still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_waits_for_its_predecessors_memory_not_for_running_work() {
    // 192 MiB for invocations, 10% kept for critical work: one 100 + 32 MiB request fits.
    let node = TestNode::start(
        r#"
version = 1
[node]
listen = "127.0.0.1:0"
admin = "127.0.0.1:0"
max_memory = "256MiB"

[[module]]
id = "solo"
component = "{guest:http-p3}"
routes = ["/solo/..."]
[module.limits]
memory = "100MiB"
max_concurrent_per_instance = 1
"#,
    )
    .await
    .unwrap();
    let stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    for i in 0..40 {
        let request = http::Request::get(node.url("/solo/sleep?ms=0"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let reply = sender.send_request(request).await.unwrap();
        let status = reply.status();
        let body = reply.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "request {i}: {body:?}");
    }
    // Running work is not on its way back: a second request while one sleeps is refused.
    let sleeping = tokio::spawn({
        let url = node.url("/solo/sleep?ms=1000");
        async move { get(&url).await.unwrap().status }
    });
    let slot = node.node.snapshot().module("solo").cloned().unwrap();
    spark_testkit::wait_until(Duration::from_secs(10), "one in flight", || {
        let slot = slot.clone();
        async move { slot.stats.snapshot().in_flight == 1 }
    })
    .await;
    let started = Instant::now();
    let refused = get(&node.url("/solo/sleep?ms=0")).await.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "refused at once, not after waiting: {:?}",
        started.elapsed()
    );
    assert_eq!(sleeping.await.unwrap(), 200);
    everything_given_back(&node, "solo").await;
    node.stop().await;
}

/// A module that opts into reuse keeps an idle instance for its next request, up to its idle
/// timeout and its life; the idle instance holds its own slot and memory and nothing of the
/// requests it served, and gives them back when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_kept_idle_serves_the_next_requests_within_its_life() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    let gauges = async || {
        let page = get(&node.admin_url("/metrics")).await.unwrap().text();
        let gauge = |name: &str| metric(&page, name).unwrap() as u64;
        (
            gauge("spark_node_slots_in_use"),
            gauge("spark_node_memory_reserved_bytes"),
        )
    };
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = get(&node.url("/reuse/sleep?ms=1")).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());
        seen.push(instance_of(&reply.text()).0);
    }
    assert_eq!(seen[0], seen[1], "the idle instance took the next request");
    assert_eq!(seen[1], seen[2]);
    assert_ne!(seen[2], seen[3], "its life is three requests");
    // Idle, between requests: the instance holds its slot and memory, no request's share.
    assert_eq!(gauges().await, (1, 64 << 20));
    let slot = node.node.snapshot().module("reuse").cloned().unwrap();
    assert_eq!(slot.admission.running(), 0, "no request's ticket is held");
    // Past its idle timeout it ends, and gives everything back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reply = get(&node.url("/reuse/sleep?ms=1")).await.unwrap();
    assert_ne!(
        instance_of(&reply.text()).0,
        seen[3],
        "a new instance after the idle timeout"
    );
    everything_given_back(&node, "reuse").await;
    node.stop().await;
}

/// The head of a raw HTTP/1.1 GET's response, lower-cased, read as soon as it arrives.
async fn head_of(node: &TestNode, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: spark\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the head within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before the head: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).to_lowercase()
}

/// A small response's body is gathered with its head (`serve::gathered`): it goes out with
/// its length, not chunked; a body that never ends still gets its head and first chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_response_goes_out_with_its_length_and_a_stream_still_streams() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    for path in ["/p3/", "/hello"] {
        let head = head_of(&node, path).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-length:"), "{path}: {head}");
        assert!(!head.contains("transfer-encoding"), "{path}: {head}");
    }
    let head = head_of(&node, "/p3/stall").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    node.stop().await;
}
