//! Manifest parsing and validation: good manifests, and every kind of bad one with its line.

use super::*;

mod node_settings;

const GOOD: &str = r#"
version = 1

[node]
listen = "127.0.0.1:18080"
admin = "127.0.0.1:19090"
max_instances = 200
shutdown_grace = "5s"

[[module]]
id = "storefront"
component = "guests/hello.wasm"
routes = ["/", "/shop/..."]
priority = "critical"
weight = 4
allowed_outbound_hosts = ["http://127.0.0.1:*"]
health = "/shop/health"

[module.limits]
memory = "32MiB"
concurrency = 8
queue = 16
queue_timeout = "500ms"
timeout = "2s"
cpu_time = "1s"
response_body = "1MiB"

[module.env]
GREETING = "hej"

[[module]]
id = "inventory-sync"
component = "/abs/job.wasm"
schedule = { every = "30s" }
priority = "background"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("/etc/spark/spark.toml"))
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

/// The single diagnostic of a refused manifest, as `line: message`.
fn refusal(text: &str) -> (usize, String) {
    let err = parse(text).expect_err("manifest should be refused");
    let d = err.diagnostics();
    assert_eq!(d.len(), 1, "expected one diagnostic, got {d:?}");
    (d[0].line, d[0].message.clone())
}

#[test]
fn good_manifest_is_fully_validated() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.node.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(m.node.max_instances, 200);
    assert_eq!(m.node.shutdown_grace, Duration::from_secs(5));
    let shop = m.module("storefront").unwrap();
    assert_eq!(
        shop.component,
        ComponentRef::File("/etc/spark/guests/hello.wasm".into())
    );
    assert_eq!(shop.priority, Priority::Critical);
    assert_eq!(shop.weight, 4);
    assert_eq!(shop.limits.memory, 32 << 20);
    assert_eq!(shop.limits.concurrency, 8);
    assert_eq!(shop.limits.queue_timeout, Duration::from_millis(500));
    assert_eq!(shop.limits.response_body, 1 << 20);
    assert_eq!(shop.env["GREETING"], "hej");
    assert!(shop.outbound.allows("http", "127.0.0.1", 9000));
    assert!(!shop.outbound.allows("https", "example.com", 443));
    assert_eq!(shop.health.as_deref(), Some("/shop/health"));
    let job = m.module("inventory-sync").unwrap();
    assert_eq!(job.component, ComponentRef::File("/abs/job.wasm".into()));
    assert_eq!(
        job.trigger,
        Trigger::Schedule {
            every: Duration::from_secs(30)
        }
    );
    assert_eq!(job.priority, Priority::Background);
    assert_eq!(job.limits, Limits::default());
    assert!(
        job.outbound.entries().is_empty(),
        "no outbound hosts by default"
    );
}

#[test]
fn unknown_field_names_its_line() {
    let text = GOOD.replace("weight = 4", "weight = 4\nwieght = 5");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "wieght"));
    assert!(message.contains("unknown field `wieght`"), "{message}");
}

#[test]
fn unknown_limit_field_is_refused() {
    let text = GOOD.replace("concurrency = 8", "concurency = 8");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "concurency"));
    assert!(message.contains("concurency"), "{message}");
}

#[test]
fn bad_limit_values_name_the_value() {
    let (line, message) = refusal(&GOOD.replace("\"32MiB\"", "\"32 potatoes\""));
    assert_eq!(line, line_of(GOOD, "32MiB"));
    assert!(
        message.contains("limits.memory") && message.contains("MiB"),
        "{message}"
    );

    let (line, message) = refusal(&GOOD.replace("concurrency = 8", "concurrency = 0"));
    assert_eq!(line, line_of(GOOD, "concurrency = 8"));
    assert!(message.contains("between 1 and"), "{message}");

    let (_, message) = refusal(&GOOD.replace("timeout = \"2s\"", "timeout = \"0s\""));
    assert!(message.contains("greater than zero"), "{message}");

    let (_, message) = refusal(&GOOD.replace("\"32MiB\"", "\"2GiB\""));
    assert!(message.contains("max_module_memory"), "{message}");

    let (_, message) = refusal(&GOOD.replace("concurrency = 8", "concurrency = \"eight\""));
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn duplicate_route_names_both_modules() {
    let text = GOOD.replace("schedule = { every = \"30s\" }", "routes = [\"/shop/...\"]");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "routes = [\"/shop/...\"]"));
    assert!(message.contains("duplicate route /shop/..."), "{message}");
    assert!(message.contains("'storefront'"), "{message}");
}

#[test]
fn duplicate_ids_and_bad_ids() {
    let text = GOOD.replace("id = \"inventory-sync\"", "id = \"storefront\"");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(GOOD, "id = \"inventory-sync\""));
    assert!(message.contains("duplicate module id"), "{message}");
    let (_, message) = refusal(&GOOD.replace("id = \"storefront\"", "id = \"Store Front\""));
    assert!(message.contains("invalid module id"), "{message}");
}

#[test]
fn routes_and_schedule_are_exclusive_and_one_is_required() {
    let both = GOOD.replace(
        "schedule = { every = \"30s\" }",
        "schedule = { every = \"30s\" }\nroutes = [\"/job\"]",
    );
    assert!(refusal(&both).1.contains("not both"));
    let neither = GOOD.replace("schedule = { every = \"30s\" }", "");
    assert!(refusal(&neither).1.contains("give `routes"));
    let fast = GOOD.replace("every = \"30s\"", "every = \"10ms\"");
    assert!(refusal(&fast).1.contains("at least 1s"));
}

#[test]
fn version_is_checked_first() {
    let (line, message) = refusal(&GOOD.replace("version = 1", "version = 2"));
    assert_eq!(line, 2);
    assert!(
        message.contains("unsupported manifest version 2"),
        "{message}"
    );
    let (_, message) = refusal(&GOOD.replace("version = 1", ""));
    assert!(message.contains("missing `version = 1`"), "{message}");
}

#[test]
fn syntax_errors_point_at_the_line() {
    let (line, _) = refusal(&GOOD.replace("priority = \"critical\"", "priority = \"critical"));
    assert_eq!(line, line_of(GOOD, "priority = \"critical\""));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = GOOD
        .replace("priority = \"critical\"", "priority = \"urgent\"")
        .replace("\"http://127.0.0.1:*\"", "\"127.0.0.1\"");
    let err = parse(&text).unwrap_err();
    assert_eq!(err.diagnostics().len(), 2, "{err}");
    let rendered = err.to_string();
    let expected = format!(
        "/etc/spark/spark.toml:{}:",
        line_of(GOOD, "priority = \"critical\"")
    );
    assert!(rendered.contains(&expected), "{rendered}");
    assert!(rendered.contains("unknown priority"), "{rendered}");
    assert!(rendered.contains("invalid outbound host"), "{rendered}");
}

#[test]
fn no_modules_is_an_error() {
    assert!(refusal("version = 1\n").1.contains("no modules"));
}

#[test]
fn missing_component_file_names_its_line() {
    let dir = std::env::temp_dir().join(format!("spark-manifest-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spark.toml");
    std::fs::write(&path, GOOD).unwrap();
    let err = Manifest::load(&path).unwrap_err();
    let lines: Vec<usize> = err.diagnostics().iter().map(|d| d.line).collect();
    assert_eq!(
        lines,
        vec![
            line_of(GOOD, "guests/hello.wasm"),
            line_of(GOOD, "/abs/job.wasm")
        ],
        "{err}"
    );
    assert!(
        err.to_string().contains("hello.wasm cannot be read"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_component_manifest_serves_everything() {
    let m = Manifest::single("/x/app.wasm".into(), "127.0.0.1:0".parse().unwrap());
    let Trigger::Http { routes } = &m.modules[0].trigger else {
        panic!("http module expected")
    };
    assert!(routes[0].matches("/any/path"));
}

#[test]
fn components_may_be_artifacts_by_digest() {
    let digest = "ab".repeat(32);
    let text = GOOD.replace(
        "component = \"guests/hello.wasm\"",
        &format!("component = \"sha256:{digest}\""),
    );
    let m = parse(&text).unwrap();
    assert_eq!(
        m.module("storefront").unwrap().component,
        ComponentRef::Artifact(digest.clone())
    );
    assert_eq!(
        m.module("storefront").unwrap().component.to_string(),
        format!("sha256:{digest}")
    );
    let (_, message) = refusal(&GOOD.replace(
        "component = \"guests/hello.wasm\"",
        "component = \"sha256:XYZ\"",
    ));
    assert!(message.contains("invalid artifact reference"), "{message}");
}

#[test]
fn rollout_settings_are_validated() {
    let m = parse(GOOD).unwrap();
    assert_eq!(
        m.module("storefront").unwrap().rollout,
        RolloutSettings::default()
    );
    let with = |body: &str| {
        GOOD.replace(
            "[module.env]\nGREETING",
            &format!("[module.rollout]\n{body}\n\n[module.env]\nGREETING"),
        )
    };
    let r = parse(&with(
        "steps = [10, 100]\nstep_duration = \"5s\"\nmin_requests = 20\nsticky_header = \"X-User\"",
    ))
    .unwrap();
    let r = &r.module("storefront").unwrap().rollout;
    assert_eq!(
        (
            r.steps.clone(),
            r.step_duration,
            r.min_requests,
            r.sticky_header.clone()
        ),
        (
            vec![10.0, 100.0],
            Duration::from_secs(5),
            20,
            Some("x-user".into())
        )
    );
    for bad in [
        "steps = [50, 25, 100]",
        "steps = [5, 50]",
        "steps = []",
        "sticky_header = \"x y\"",
        "min_requests = 0",
    ] {
        let (line, message) = refusal(&with(bad));
        assert_eq!(
            line,
            line_of(&with(bad), bad.split(' ').next().unwrap()),
            "{bad}: {message}"
        );
    }
}

#[test]
fn nn_settings_and_limits_are_validated() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.nn, None);
    assert_eq!(m.modules[0].limits.nn_tensor, DEFAULT_NN_TENSOR);

    let table = "[nn]\nbackends = [\"ort-webgpu\", \"ort-cpu\"]\nort_library = \"lib/libonnxruntime.so.1\"\nallow_software_adapters = true\ndevice_root = \"fixtures/npu\"\nrediscover = \"0s\"\nselection = \"chain\"\nreprobe = \"5s\"\n\n[[nn.model]]\nname = \"ppocr-cls\"\npath = \"models/cls.onnx\"\n\n";
    let text = GOOD
        .replace(
            "[[module]]\nid = \"storefront\"",
            &format!("{table}[[module]]\nid = \"storefront\""),
        )
        .replace(
            "response_body = \"1MiB\"",
            "response_body = \"1MiB\"\nnn_model = \"0B\"\nnn_tensor = \"64KiB\"",
        );
    let m = parse(&text).unwrap();
    let nn = m.nn.unwrap();
    assert_eq!(nn.backends, ["ort-webgpu", "ort-cpu", "tract"]);
    assert_eq!(
        nn.ort_library.unwrap(),
        Path::new("/etc/spark/lib/libonnxruntime.so.1")
    );
    assert!(nn.allow_software_adapters);
    assert_eq!(nn.device_root, Path::new("/etc/spark/fixtures/npu"));
    assert!(nn.rediscover.is_zero());
    assert_eq!(nn.selection, crate::NnSelection::Chain);
    assert_eq!(nn.reprobe, std::time::Duration::from_secs(5));
    assert_eq!(nn.models[0].path, Path::new("/etc/spark/models/cls.onnx"));
    assert_eq!(m.modules[0].limits.nn_model, 0);
    assert_eq!(m.modules[0].limits.nn_tensor, 64 << 10);

    for (bad, expected) in [
        ("backends = [\"cuda\"]", "unknown backend \"cuda\""),
        ("rediscover = \"10ms\"", "nn.rediscover must be at least 1s"),
        (
            "cpu_threads = 0",
            "nn.cpu_threads must be between 1 and 256",
        ),
        ("turbo = true", "unknown field `turbo`"),
        (
            "selection = \"fastest\"",
            "is not \"measured\" or \"chain\"",
        ),
    ] {
        let text = GOOD.replace(
            "[[module]]\nid = \"storefront\"",
            &format!("[nn]\n{bad}\n\n[[module]]\nid = \"storefront\""),
        );
        let (line, message) = refusal(&text);
        assert_eq!(
            line,
            line_of(&text, bad.split(' ').next().unwrap()),
            "{bad}"
        );
        assert!(message.contains(expected), "{bad}: {message}");
    }
    let text = GOOD.replace(
        "response_body = \"1MiB\"",
        "response_body = \"1MiB\"\nnn_tensor = \"lots\"",
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "nn_tensor"));
    assert!(message.contains("limits.nn_tensor"), "{message}");
}

#[test]
fn host_resource_limits_are_validated() {
    let manifest = parse(
        r#"version = 1
[[module]]
id = "a"
component = "a.wasm"
routes = ["/"]
[module.limits]
request_body = "1MiB"
host_memory = "8MiB"
resources = 64
outbound_requests = 2
log = "4KiB"
nn_tensor = "4MiB"
"#,
    )
    .unwrap();
    let limits = manifest.modules[0].limits;
    assert_eq!(limits.request_body, 1 << 20);
    assert_eq!(limits.host_memory, 8 << 20);
    assert_eq!(limits.resources, 64);
    assert_eq!(limits.outbound_requests, 2);
    assert_eq!(limits.log, 4 << 10);
    assert_eq!(
        limits.nn_model, 0,
        "guest-supplied models are off by default"
    );

    let defaults = Limits::default();
    assert!(defaults.resources <= 10_000, "far below 100,000");
    assert!(defaults.nn_tensor <= defaults.host_memory);

    let small = parse(
        "version = 1\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[module.limits]\nhost_memory = \"1MiB\"\n",
    )
    .unwrap();
    assert_eq!(
        small.modules[0].limits.nn_tensor,
        1 << 20,
        "a default is lowered to fit"
    );
    let (line, message) = refusal(
        "version = 1\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[module.limits]\nhost_memory = \"1MiB\"\nnn_tensor = \"2MiB\"\n",
    );
    assert_eq!(line, 8);
    assert!(message.contains("exceeds limits.host_memory"), "{message}");
    let (line, message) = refusal(
        "version = 1\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[module.limits]\nresources = 100001\n",
    );
    assert_eq!(line, 7);
    assert!(message.contains("limits.resources"), "{message}");
}

#[test]
fn instance_concurrency_is_bounded() {
    let module = "version = 1\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[module.limits]\n";
    let defaults = parse(module).unwrap();
    assert_eq!(
        defaults.modules[0].limits.max_concurrent_per_instance,
        crate::DEFAULT_MAX_CONCURRENT_PER_INSTANCE
    );
    let one = parse(&format!("{module}max_concurrent_per_instance = 1\n")).unwrap();
    assert_eq!(one.modules[0].limits.max_concurrent_per_instance, 1);
    for bad in ["0", "1001"] {
        let (line, message) = refusal(&format!("{module}max_concurrent_per_instance = {bad}\n"));
        assert_eq!(line, 7, "{bad}");
        assert!(
            message.contains("limits.max_concurrent_per_instance"),
            "{bad}: {message}"
        );
    }
    // A value of the wrong type is refused by the parser, at its line, as for every key.
    let (line, message) = refusal(&format!("{module}max_concurrent_per_instance = \"many\"\n"));
    assert_eq!(line, 7);
    assert!(message.contains("invalid type"), "{message}");
}

#[test]
fn instance_reuse_is_opt_in_and_bounded() {
    let module = "version = 1\n[[module]]\nid = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/\"]\n[module.limits]\n";
    let limits = |extra: &str| parse(&format!("{module}{extra}")).unwrap().modules[0].limits;
    // By default an instance serves one burst: its life is its bound at once, no idle wait.
    let default = limits("");
    assert_eq!(
        default.max_requests_per_instance,
        default.max_concurrent_per_instance
    );
    assert_eq!(default.instance_idle_timeout, Duration::ZERO);
    assert_eq!(
        limits("max_concurrent_per_instance = 4\n").max_requests_per_instance,
        4
    );
    let reuse = limits("max_requests_per_instance = 128\ninstance_idle_timeout = \"1s\"\n");
    assert_eq!(reuse.max_requests_per_instance, 128);
    assert_eq!(reuse.instance_idle_timeout, Duration::from_secs(1));
    let (line, message) = refusal(&format!("{module}max_requests_per_instance = 0\n"));
    assert_eq!(line, 7);
    assert!(
        message.contains("limits.max_requests_per_instance"),
        "{message}"
    );
    let (line, message) = refusal(&format!(
        "{module}timeout = \"2s\"\ninstance_idle_timeout = \"5s\"\n"
    ));
    assert_eq!(line, 8);
    assert!(
        message.contains("instance_idle_timeout")
            && message.contains("shorter than limits.timeout"),
        "{message}"
    );
}

#[test]
fn tiering_is_on_by_default_and_can_be_turned_off_per_node_and_per_module() {
    let m = parse(GOOD).unwrap();
    assert!(m.node.tiering, "tiering is on by default");
    assert!(m.modules.iter().all(|module| module.tiering));

    let off = parse(&GOOD.replace(
        "shutdown_grace = \"5s\"",
        "shutdown_grace = \"5s\"\ntiering = false",
    ))
    .unwrap();
    assert!(!off.node.tiering);

    let one = parse(&GOOD.replace("weight = 4", "weight = 4\ntiering = false")).unwrap();
    assert!(one.node.tiering);
    assert!(!one.module("storefront").unwrap().tiering);
    assert!(one.module("inventory-sync").unwrap().tiering);

    // A value that is not a boolean names its line.
    let text = GOOD.replace("weight = 4", "weight = 4\ntiering = \"no\"");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "tiering"));
    assert!(
        message.contains("tiering") || message.contains("boolean"),
        "{message}"
    );
}

const KV: &str = r#"
version = 1

[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }

[key_value.cache]
max_value_size = "1KiB"
max_keys = 10
max_bytes = "1MiB"
fleet = true

[[module]]
id = "app"
component = "app.wasm"
routes = ["/..."]
key_value_stores = ["default", "cache"]
missing_imports = "trap"

[module.variables]
message = "{{ greeting }}, world"
api = "Bearer {{token}}"
"#;

#[test]
fn variables_and_key_value_stores_are_bound_to_modules() {
    let m = parse(KV).unwrap();
    let app = &m.modules[0];
    assert_eq!(app.missing_imports, MissingImports::Trap);
    assert_eq!(app.key_value_stores, ["default", "cache"]);
    assert_eq!(app.app.scope, "-");
    assert_eq!(
        app.app.key_value_stores["default"],
        KeyValueStoreSpec::default()
    );
    assert_eq!(app.app.key_value_stores["cache"].max_value_size, 1024);
    assert_eq!(app.app.key_value_stores["cache"].max_keys, 10);
    assert!(app.app.key_value_stores["cache"].fleet);
    assert!(!app.app.key_value_stores["default"].fleet);
    assert!(app.app.variables["token"].secret);
    assert!(app.app.variables["token"].required);
    assert_eq!(app.variables["message"], "{{ greeting }}, world");
    assert!(m.key_value_stores.contains_key("default"));
}

#[test]
fn bad_variables_and_stores_name_their_line() {
    let text = KV.replace("{{token}}", "{{ tokn }}");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "tokn"));
    assert!(message.contains("refers to 'tokn'"), "{message}");
    let text = KV.replace("missing_imports = \"trap\"", "missing_imports = \"ignore\"");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "ignore"));
    assert!(message.contains("\"refuse\" or \"trap\""), "{message}");
    let text = KV.replace("max_keys = 10", "max_keys = 0");
    let (line, _) = refusal(&text);
    assert_eq!(line, line_of(&text, "max_keys = 0"));
    let text = KV.replace(
        "required = true, secret",
        "required = true, default = \"x\", secret",
    );
    let (_, message) = refusal(&text);
    assert!(
        message.contains("a required variable has no default"),
        "{message}"
    );
}
