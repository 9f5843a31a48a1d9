//! Request tracing end to end: W3C `traceparent` in, a server span per request exported over
//! OTLP/HTTP to a real receiver (`spark_testkit::OtlpReceiver`, decoding the protobuf with the
//! real message types), `traceparent` out on the outbound requests of modules that opt in,
//! and a collector that is down or stalls costing requests nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use spark_testkit::{OtlpReceiver, ReceivedSpan, TestNode, get, metric, request_with};

/// How long spans may take to reach the receiver (the exporter batches for 500 ms).
const EXPORTED_WITHIN: Duration = Duration::from_secs(10);
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

fn node_table(endpoint: &str, extra: &str) -> String {
    format!(
        "[node]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\notlp_endpoint = \"{endpoint}\"\n{extra}\n"
    )
}

async fn get_with(url: &str, headers: &[(&str, &str)]) -> spark_testkit::Reply {
    request_with("GET", url, headers, b"").await.unwrap()
}

/// The server span in trace `trace_id`, once exported.
async fn server_span(receiver: &OtlpReceiver, trace_id: &str) -> ReceivedSpan {
    receiver
        .span(EXPORTED_WITHIN, |s| {
            s.trace_id() == trace_id && s.span.kind == 2
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "no server span for trace {trace_id}: {:?}",
                receiver.spans()
            )
        })
}

fn loaded(node: &TestNode, id: &str) -> bool {
    node.node
        .snapshot()
        .module(id)
        .unwrap()
        .residency
        .current()
        .is_some()
}

#[tokio::test]
async fn a_traceparent_makes_the_span_a_child_and_cold_starts_are_flagged() {
    let receiver = OtlpReceiver::start().await;
    let manifest = format!(
        r#"
version = 1
{node}
[predictor]
interval = "200ms"
memory_budget = "64KiB"

[[module]]
id = "hello"
component = "{{guest:hello}}"
routes = ["/hello/..."]

[[module]]
id = "shop"
component = "{{guest:hello}}"
routes = ["/shop"]
priority = "critical"
"#,
        node = node_table(&receiver.endpoint(), "")
    );
    let node = TestNode::start_manual(&manifest).await.unwrap();
    assert!(
        node.advance_until(Duration::from_millis(200), Duration::from_secs(5), || {
            !loaded(&node, "hello")
        })
        .await,
        "an idle module over the budget is evicted"
    );

    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let headers = [
        ("traceparent", parent.as_str()),
        ("tracestate", "vendor=abc"),
    ];
    let cold = get_with(&node.url("/hello/x"), &headers).await;
    assert_eq!(cold.status, 200, "{}", cold.text());
    assert!(cold.headers.contains_key("spark-cold-start"));
    let span = server_span(&receiver, PARENT_TRACE).await;
    assert_eq!(span.parent_span_id(), PARENT_SPAN);
    assert_ne!(span.span_id(), PARENT_SPAN);
    assert_eq!(span.span.name, "GET /hello/...");
    assert_eq!(span.span.trace_state, "vendor=abc");
    assert_eq!(span.str("spark.module"), Some("hello"));
    assert!(
        span.str("spark.release")
            .is_some_and(|r| r.starts_with('r'))
    );
    assert_eq!(span.str("spark.priority"), Some("normal"));
    assert_eq!(span.str("http.route"), Some("/hello/..."));
    assert_eq!(span.str("http.request.method"), Some("GET"));
    assert_eq!(span.number("http.response.status_code"), Some(200.0));
    assert_eq!(span.str("spark.outcome"), Some("ok"));
    assert!(span.number("spark.queue_ms").is_some_and(|ms| ms >= 0.0));
    // Guest CPU as metered when the response ended: a guest that answers within its first
    // poll (hello) may show 0 here, the poll being charged when it returns.
    assert!(span.number("spark.cpu_ms").is_some_and(|ms| ms >= 0.0));
    assert_eq!(span.bool("spark.cold_start"), Some(true));
    assert_eq!(span.str("spark.cold_start.kind"), Some("shared"));
    assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
    assert_eq!(span.resource_str("service.name"), Some("spark"));
    assert!(
        span.resource_str("service.instance.id")
            .is_some_and(|id| id.starts_with("node-"))
    );

    let warm_trace = "11111111111111111111111111111111";
    let warm_parent = format!("00-{warm_trace}-{PARENT_SPAN}-01");
    let warm = get_with(
        &node.url("/hello/x"),
        &[("traceparent", warm_parent.as_str())],
    )
    .await;
    assert_eq!(warm.status, 200);
    let span = server_span(&receiver, warm_trace).await;
    assert_eq!(
        span.bool("spark.cold_start"),
        Some(false),
        "the next request is warm"
    );
    assert_eq!(
        span.span.trace_state, "",
        "no tracestate sent, none passed on"
    );
    assert_eq!(
        receiver.refused(),
        0,
        "every export was a well-formed OTLP request"
    );
}

#[tokio::test]
async fn missing_or_malformed_traceparents_start_fresh_traces() {
    let receiver = OtlpReceiver::start().await;
    let manifest = format!(
        r#"
version = 1
{node}
[[module]]
id = "hello"
component = "{{guest:hello}}"
routes = ["/hello"]
"#,
        node = node_table(&receiver.endpoint(), "")
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let zeros = format!("00-{}-{PARENT_SPAN}-01", "0".repeat(32));
    let upper = format!("00-{}-{PARENT_SPAN}-01", PARENT_TRACE.to_uppercase());
    let unsampled_trace = "22222222222222222222222222222222";
    let unsampled = format!("00-{unsampled_trace}-{PARENT_SPAN}-00");
    for bad in [zeros.as_str(), upper.as_str(), "garbage", ""] {
        let reply = get_with(&node.url("/hello"), &[("traceparent", bad)]).await;
        assert_eq!(
            reply.status, 200,
            "a bad traceparent is ignored, not an error: {bad:?}"
        );
    }
    let reply = get_with(&node.url("/hello"), &[("traceparent", unsampled.as_str())]).await;
    assert_eq!(reply.status, 200);
    let plain = get(&node.url("/hello")).await.unwrap();
    assert_eq!(plain.status, 200);
    let missing = get(&node.url("/nowhere")).await.unwrap();
    assert_eq!(missing.status, 404);

    let unrouted = receiver
        .span(EXPORTED_WITHIN, |s| {
            s.str("spark.outcome") == Some("unrouted")
        })
        .await
        .expect("a request matching no route has a span too");
    assert_eq!(unrouted.number("http.response.status_code"), Some(404.0));
    assert_eq!(unrouted.str("spark.module"), None);
    assert!(
        spark_testkit::eventually(EXPORTED_WITHIN, || {
            receiver
                .spans()
                .iter()
                .filter(|s| s.str("spark.module") == Some("hello"))
                .count()
                >= 5
        })
        .await,
        "{:?}",
        receiver.spans()
    );
    let spans = receiver.spans();
    let served: Vec<_> = spans
        .iter()
        .filter(|s| s.str("spark.module") == Some("hello"))
        .collect();
    assert_eq!(
        served.len(),
        5,
        "the unsampled request's span is not exported"
    );
    let mut ids = std::collections::HashSet::new();
    for span in &served {
        assert_eq!(span.parent_span_id(), "", "a fresh trace has no parent");
        assert_eq!(span.trace_id().len(), 32);
        assert_ne!(span.trace_id(), "0".repeat(32));
        assert_ne!(span.trace_id(), PARENT_TRACE);
        assert_ne!(span.trace_id(), unsampled_trace);
        assert!(ids.insert(span.trace_id()), "every fresh trace id is new");
    }
}

/// An upstream that answers 200 and remembers each request's `traceparent` and
/// `tracestate` headers (`None`: absent).
async fn recording_upstream() -> (
    SocketAddr,
    Arc<Mutex<Vec<(Option<String>, Option<String>)>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let header = |name: &str| {
                            request
                                .headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        record
                            .lock()
                            .unwrap()
                            .push((header("traceparent"), header("tracestate")));
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn outbound_requests_carry_the_trace_only_when_the_module_opts_in() {
    let receiver = OtlpReceiver::start().await;
    let (upstream, seen) = recording_upstream().await;
    let manifest = format!(
        r#"
version = 1
{node}
[[module]]
id = "traced"
component = "{{guest:echo}}"
routes = ["/traced/..."]
allowed_outbound_hosts = ["http://127.0.0.1:{port}"]
trace_outbound = true

[[module]]
id = "plain"
component = "{{guest:echo}}"
routes = ["/plain/..."]
allowed_outbound_hosts = ["http://127.0.0.1:{port}"]
"#,
        node = node_table(&receiver.endpoint(), ""),
        port = upstream.port()
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let parent = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let headers = [("traceparent", parent.as_str()), ("tracestate", "v=1")];

    let reply = get_with(
        &node.url(&format!("/traced/fetch?url=http://{upstream}/data")),
        &headers,
    )
    .await;
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "upstream 200: ok")
    );
    let (sent, state) = seen.lock().unwrap().pop().expect("the upstream was called");
    let sent = sent.expect("the opted-in module's request carries a traceparent");
    let fields: Vec<&str> = sent.split('-').collect();
    assert_eq!(fields.len(), 4, "{sent}");
    assert_eq!(
        (fields[0], fields[1], fields[3]),
        ("00", PARENT_TRACE, "01")
    );
    assert_eq!(state.as_deref(), Some("v=1"));
    let outbound_span = fields[2].to_owned();

    let server = server_span(&receiver, PARENT_TRACE).await;
    let client = receiver
        .span(EXPORTED_WITHIN, |s| s.span_id() == outbound_span)
        .await
        .expect("the outbound request's span is exported");
    assert_eq!(client.span.kind, 3, "a client span");
    assert_eq!(client.trace_id(), PARENT_TRACE);
    assert_eq!(client.parent_span_id(), server.span_id());
    assert_eq!(client.number("http.response.status_code"), Some(200.0));
    assert_eq!(
        client.str("url.full"),
        Some(format!("http://{upstream}/data").as_str())
    );
    assert_eq!(server.parent_span_id(), PARENT_SPAN);

    let reply = get_with(
        &node.url(&format!("/plain/fetch?url=http://{upstream}/data")),
        &headers,
    )
    .await;
    assert_eq!(reply.status, 200);
    let (sent, state) = seen.lock().unwrap().pop().expect("the upstream was called");
    assert_eq!((sent, state), (None, None), "no opt-in, no header");
}

async fn metric_value(node: &TestNode, series: &str) -> f64 {
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    metric(&page, series).unwrap_or_else(|| panic!("no {series} in:\n{page}"))
}

/// Serves `count` requests one after another, each within a generous guard (a request that
/// waited on the collector would take the export timeout or never end).
async fn serve_all(node: &TestNode, count: usize) {
    for i in 0..count {
        let reply = tokio::time::timeout(Duration::from_secs(5), get(&node.url("/hello")))
            .await
            .unwrap_or_else(|_| panic!("request {i} waited on the collector"))
            .unwrap();
        assert_eq!(reply.status, 200);
    }
}

#[tokio::test]
async fn a_dead_collector_costs_requests_nothing() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let manifest = format!(
        "version = 1\n{}\n[[module]]\nid = \"hello\"\ncomponent = \"{{guest:hello}}\"\nroutes = [\"/hello\"]\n",
        node_table(&endpoint, "otlp_timeout = \"1s\"")
    );
    let node = TestNode::start(&manifest).await.unwrap();
    serve_all(&node, 5).await;
    let failed = "spark_trace_spans_failed_total";
    spark_testkit::wait_until(EXPORTED_WITHIN, "the failed export is counted", || async {
        metric_value(&node, failed).await >= 1.0
    })
    .await;
    assert_eq!(
        metric_value(&node, "spark_trace_spans_exported_total").await,
        0.0
    );
}

#[tokio::test]
async fn a_stalled_collector_costs_requests_nothing_and_its_queue_stays_bounded() {
    let receiver = OtlpReceiver::stalled().await;
    let manifest = format!(
        "version = 1\n{}\n[[module]]\nid = \"hello\"\ncomponent = \"{{guest:hello}}\"\nroutes = [\"/hello\"]\n",
        node_table(
            &receiver.endpoint(),
            "otlp_timeout = \"300ms\"\notlp_queue = 4"
        )
    );
    let node = TestNode::start(&manifest).await.unwrap();
    serve_all(&node, 40).await;
    spark_testkit::wait_until(
        EXPORTED_WITHIN,
        "a stalled export times out and is counted",
        || async { metric_value(&node, "spark_trace_spans_failed_total").await >= 1.0 },
    )
    .await;
    let dropped = metric_value(&node, "spark_trace_spans_dropped_total").await;
    let failed = metric_value(&node, "spark_trace_spans_failed_total").await;
    assert!(
        dropped >= 1.0,
        "a queue of 4 cannot hold 40 spans while the collector stalls"
    );
    assert!(
        dropped + failed <= 40.0,
        "each span is counted once: dropped {dropped}, failed {failed}"
    );
    assert!(
        receiver.connections() >= 1,
        "the exporter did try the collector"
    );
}

/// A client that leaves mid-request: the guest is cancelled, its slot given back, and the
/// span (a guard) is still exported once, as abandoned (499), not lost and not doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_request_ends_its_span_as_abandoned() {
    use tokio::io::AsyncWriteExt;

    let receiver = OtlpReceiver::start().await;
    let manifest = format!(
        "version = 1\n{node}\n[[module]]\nid = \"spin\"\ncomponent = \"{{guest:faults}}\"\nroutes = [\"/spin/...\"]\n[module.limits]\ntimeout = \"30s\"\ncpu_time = \"30s\"\n",
        node = node_table(&receiver.endpoint(), "")
    );
    let node = TestNode::start(&manifest).await.unwrap();
    let trace = "22222222222222222222222222222222";
    let mut client = tokio::net::TcpStream::connect(node.node.http_addr)
        .await
        .unwrap();
    let request = format!(
        "GET /spin/loop HTTP/1.1\r\nhost: x\r\ntraceparent: 00-{trace}-{PARENT_SPAN}-01\r\n\r\n"
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let slot = node.node.snapshot().module("spin").unwrap().clone();
    spark_testkit::wait_until(Duration::from_secs(10), "the guest runs", || {
        let slot = slot.clone();
        async move { slot.admission.running() == 1 }
    })
    .await;
    drop(client);
    spark_testkit::wait_until(Duration::from_secs(10), "the slot is given back", || {
        let slot = slot.clone();
        async move { slot.admission.running() == 0 }
    })
    .await;
    let span = server_span(&receiver, trace).await;
    assert_eq!(span.str("spark.outcome"), Some("client_abandoned"));
    assert_eq!(span.number("http.response.status_code"), Some(499.0));
    assert_eq!(span.str("spark.module"), Some("spin"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let spans = receiver.spans();
    assert_eq!(
        spans.iter().filter(|s| s.trace_id() == trace).count(),
        1,
        "exported once: {spans:?}"
    );
}
