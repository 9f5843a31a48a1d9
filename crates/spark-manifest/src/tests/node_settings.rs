//! Node-wide settings of the manifest: the orchestrator, the predictor, the front door's
//! limits and certificates, tracing. Each is validated with the line of what it refuses.

use super::*;

#[test]
fn orchestrator_settings_are_validated() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.orchestrator, OrchestratorSettings::default());
    assert!(m.orchestrator.enabled);
    assert!(m.orchestrator.background_idle_class);
    assert!(m.orchestrator.critical_first);

    let text = GOOD.replace(
        "[[module]]\nid = \"storefront\"",
        "[orchestrator]\nenabled = false\ninterval = \"250ms\"\nprobe_root = \"fixtures/laptop\"\nupstreams = [\"tcp://10.0.0.1:443\"]\nbackground_min_share = 0.2\nbackground_idle_class = false\ncritical_first = false\nbackground_nice = 10\nbattery_low = 15\n\n[[module]]\nid = \"storefront\"",
    );
    let o = parse(&text).unwrap().orchestrator;
    assert!(!o.enabled);
    assert_eq!(o.interval, Duration::from_millis(250));
    assert_eq!(o.probe_root, Path::new("/etc/spark/fixtures/laptop"));
    assert_eq!(o.upstreams, vec!["tcp://10.0.0.1:443".to_owned()]);
    assert_eq!(o.background_min_share, 0.2);
    assert_eq!(o.battery_low, 15.0);
    assert!(!o.background_idle_class);
    assert!(!o.critical_first);
    assert_eq!(o.background_nice, 10);

    for (bad, expected) in [
        (
            "background_min_share = 1.5",
            "background_min_share must be between 0.01 and 1",
        ),
        (
            "interval = \"20ms\"",
            "interval must be between 100ms and 10s",
        ),
        ("upstreams = [\"10.0.0.1\"]", "must be tcp://host:port"),
        (
            "background_nice = 40",
            "background_nice must be between 0 and 19",
        ),
        ("background_idle_class = 1", "invalid type"),
        ("critical_first = \"yes\"", "invalid type"),
        ("bogus = 1", "unknown field `bogus`"),
    ] {
        let text = GOOD.replace(
            "[[module]]\nid = \"storefront\"",
            &format!("[orchestrator]\n{bad}\n\n[[module]]\nid = \"storefront\""),
        );
        let (line, message) = refusal(&text);
        assert_eq!(
            line,
            line_of(&text, bad.split(' ').next().unwrap()),
            "{bad}"
        );
        assert!(message.contains(expected), "{bad}: {message}");
    }
}

#[test]
fn predictor_settings_are_validated() {
    assert_eq!(parse(GOOD).unwrap().predictor, PredictorSettings::default());
    let with = |body: &str| {
        GOOD.replace(
            "[[module]]\nid = \"storefront\"",
            &format!("[predictor]\n{body}\n\n[[module]]\nid = \"storefront\""),
        )
    };
    let p = parse(&with(
        "memory_budget = \"64MiB\"\ninterval = \"2s\"\ntime_scale = 60.0",
    ))
    .unwrap()
    .predictor;
    assert_eq!(
        (p.memory_budget, p.interval, p.time_scale),
        (64 << 20, Duration::from_secs(2), 60.0)
    );
    let (_, message) = refusal(&with("time_scale = 0.5"));
    assert!(
        message.contains("time_scale must be between 1 and 3600"),
        "{message}"
    );
    let (_, message) = refusal(&with("memory_budget = \"lots\""));
    assert!(message.contains("predictor.memory_budget"), "{message}");
    assert_eq!(p.policy, WarmthPolicy::Predict);
    let policy = |body: &str| parse(&with(body)).unwrap().predictor.policy;
    let ten_minutes = WarmthPolicy::KeepAlive(Duration::from_secs(600));
    assert_eq!(policy("keep_alive = \"10m\""), ten_minutes);
    assert_eq!(policy("policy = \"keep-alive\""), ten_minutes);
    assert_eq!(
        policy("policy = \"keep-alive\"\nkeep_alive = \"1h\""),
        WarmthPolicy::KeepAlive(Duration::from_secs(3600))
    );
    assert_eq!(policy("policy = \"hybrid\""), WarmthPolicy::Hybrid);
    assert_eq!(policy("policy = \"spark\""), WarmthPolicy::Predict);
    let (line, message) = refusal(&with("policy = \"lru\""));
    assert!(message.contains("predictor.policy must be"), "{message}");
    assert_eq!(line, line_of(&with("policy = \"lru\""), "policy"));
    let both = with("policy = \"hybrid\"\nkeep_alive = \"10m\"");
    let (line, message) = refusal(&both);
    assert!(
        message.contains("keep_alive applies to policy"),
        "{message}"
    );
    assert_eq!(line, line_of(&both, "keep_alive"));
    for bad in [
        "keep_alive = \"500ms\"",
        "keep_alive = \"169h\"",
        "keep_alive = \"soon\"",
    ] {
        let (line, message) = refusal(&with(bad));
        assert!(message.contains("predictor.keep_alive"), "{bad}: {message}");
        assert_eq!(line, line_of(&with(bad), "keep_alive"), "{bad}");
    }
}

#[test]
fn front_door_limits_and_certificates_are_validated() {
    let manifest = parse(
        r#"version = 1
[node]
max_memory = "2GiB"
max_connections = 500
max_connections_per_client = 1000
max_connection_rate_per_client = 0
max_connections_apart = 600
header_read_timeout = "5s"
idle_timeout = "30s"
send_timeout = "10s"
request_body_timeout = "3s"
h2_max_concurrent_streams = 50
h2_keepalive_interval = "0s"
h2_reset_budget = 20
linger_time = "0s"
linger_bytes = "1MiB"
admin_max_connections = 8
[[node.tls]]
cert = "certs/a.pem"
key = "certs/a.key"
[[node.tls]]
cert = "/etc/b.pem"
key = "/etc/b.key"
[[module]]
id = "a"
component = "a.wasm"
routes = ["/"]
"#,
    )
    .unwrap();
    let node = &manifest.node;
    assert_eq!(node.max_memory, Some(2 << 30));
    let limits = node.limits;
    assert_eq!(limits.max_connections, 500);
    assert_eq!(
        limits.max_connections_per_client, 500,
        "a client never gets more than the listener"
    );
    assert_eq!(
        limits.max_connections_apart, 500,
        "nor do the connections served apart"
    );
    assert_eq!(limits.max_connection_rate_per_client, 0, "no rate limit");
    assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
    assert_eq!(limits.idle_timeout, Duration::from_secs(30));
    assert_eq!(limits.send_timeout, Duration::from_secs(10));
    assert_eq!(limits.request_body_timeout, Duration::from_secs(3));
    assert_eq!(limits.h2_max_concurrent_streams, 50);
    assert!(limits.h2_keepalive_interval.is_zero());
    assert_eq!(limits.h2_reset_budget, 20);
    assert!(limits.linger_time.is_zero());
    assert_eq!(limits.linger_bytes, 1 << 20);
    let admin = limits.for_admin(node.admin_max_connections);
    assert_eq!(
        (admin.max_connections, admin.max_connections_per_client),
        (8, 8)
    );
    assert_eq!(node.tls.len(), 2);
    assert_eq!(node.tls[0].cert, Path::new("/etc/spark/certs/a.pem"));
    assert_eq!(node.tls[1].key, Path::new("/etc/b.key"));
    assert!(node.admin_tls.is_empty());

    let defaults = parse(GOOD).unwrap().node;
    assert_eq!(
        defaults.max_memory, None,
        "derived from the machine at start"
    );
    assert!(defaults.limits.header_read_timeout <= Duration::from_secs(30));
    assert!(defaults.tls.is_empty());
    assert_eq!(
        defaults.limits.max_connections_apart,
        DEFAULT_MAX_CONNECTIONS_APART
    );
    assert_eq!(
        defaults.limits.max_connection_rate_per_client,
        DEFAULT_MAX_CONNECTION_RATE_PER_CLIENT
    );

    for (field, value, expect) in [
        ("header_read_timeout", "\"0s\"", "between 100ms and 1h"),
        ("idle_timeout", "\"2h\"", "between 100ms and 1h"),
        ("max_connections", "0", "between 1 and"),
        ("max_connections_apart", "-1", "between 0 and"),
        ("max_connection_rate_per_client", "-5", "between 0 and"),
        ("max_memory", "\"1MiB\"", "at least 16MiB"),
        ("h2_keepalive_interval", "\"10ms\"", "or \"0s\": off"),
        ("linger_time", "\"2m\"", "at most 1m"),
        ("linger_bytes", "\"lots\"", "node.linger_bytes"),
    ] {
        let text = format!(
            "version = 1\n[node]\n{field} = {value}\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n"
        );
        let (line, message) = refusal(&text);
        assert_eq!(line, 3, "{field}: {message}");
        assert!(message.contains(expect), "{field}: {message}");
    }
    let (line, message) = refusal(
        "version = 1\n[node]\n[[node.tls]]\ncert = \"a.pem\"\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n",
    );
    assert!(message.contains("missing field `key`"), "{line}: {message}");
}

#[test]
fn tracing_settings_are_checked() {
    let traced = GOOD
        .replace(
            "shutdown_grace = \"5s\"",
            "shutdown_grace = \"5s\"\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_timeout = \"2s\"\notlp_queue = 100",
        )
        .replace("health = \"/shop/health\"", "health = \"/shop/health\"\ntrace_outbound = true");
    let m = parse(&traced).unwrap();
    let export = &m.node.trace_export;
    assert_eq!(
        export.endpoint.as_ref().map(OtlpEndpoint::as_str),
        Some("http://127.0.0.1:4318")
    );
    assert_eq!(
        (export.timeout, export.queue),
        (Duration::from_secs(2), 100)
    );
    assert!(m.modules[0].trace_outbound);
    assert!(!m.modules[1].trace_outbound, "off by default");
    assert_eq!(
        parse(GOOD).unwrap().node.trace_export,
        TraceExport::default()
    );

    let (line, message) =
        refusal(&traced.replace("trace_outbound = true", "trace_outbound = \"yes\""));
    assert_eq!(line, line_of(&traced, "trace_outbound = true"));
    assert!(message.contains("invalid type"), "{message}");

    let (_, message) = refusal(&traced.replace("http://127.0.0.1:4318", "https://collector:4318"));
    assert!(
        message.contains("node.otlp_endpoint: https endpoints are not supported"),
        "{message}"
    );
    let (_, message) = refusal(&traced.replace("http://127.0.0.1:4318", "127.0.0.1:4318"));
    assert!(message.contains("expected http://HOST"), "{message}");
    let (_, message) = refusal(&traced.replace("otlp_timeout = \"2s\"", "otlp_timeout = \"5m\""));
    assert!(message.contains("between 100ms and 60s"), "{message}");
    let (_, message) = refusal(&traced.replace("otlp_queue = 100", "otlp_queue = 0"));
    assert!(message.contains("node.otlp_queue"), "{message}");

    let no_hosts = traced.replace("allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n", "");
    let (line, message) = refusal(&no_hosts);
    assert_eq!(line, line_of(&no_hosts, "trace_outbound = true"));
    assert!(
        message.contains("trace_outbound needs allowed_outbound_hosts"),
        "{message}"
    );
}
