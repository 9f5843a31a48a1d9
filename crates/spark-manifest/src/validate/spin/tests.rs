//! Spin manifests: every field read, and every refusal with its line.

use std::path::{Path, PathBuf};

use crate::{
    ComponentRef, FileMount, Manifest, ManifestError, ManifestKind, MissingImports, Priority,
    Route, Trigger, VariableSpec,
};

const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "shop"
version = "1.2.0"
description = "A shop"
authors = ["Ada <ada@example.com>"]

[application.trigger.http]
base = "/shop"

[application.tool.spark.node]
listen = "127.0.0.1:18080"
admin = "127.0.0.1:19090"

[application.tool.spark.key_value_stores.default]
max_value_size = "64KiB"
max_keys = 100
fleet = true

[application.tool.other]
anything = "goes"

[variables]
greeting = { default = "hej" }
api_token = { required = true, secret = true }

[[trigger.http]]
route = "/..."
component = "front"

[[trigger.http]]
route = "/cart"
component = "cart"

[[trigger.http]]
id = "cart-api"
route = "/api/cart/..."
component = "cart"
executor = { type = "spin" }

[[trigger.http]]
route = { private = true }
component = "internal"

[component.front]
source = "target/front.wasm"
description = "the front page"
allowed_outbound_hosts = ["https://api.example.com"]
key_value_stores = ["default", "sessions"]
environment = { MODE = "prod" }
files = ["static/**/*", { source = "data", destination = "/etc/data" }, "assets"]
exclude_files = []
sqlite_databases = []

[component.front.variables]
message = "{{ greeting }}, world"
token = "{{ api_token }}"
plain = "literal"

[component.front.build]
command = "cargo build --release"
watch = ["src/**/*.rs"]

[component.front.tool.spark]
priority = "critical"
weight = 3
health = "/shop/healthz"
missing_imports = "trap"
tiering = false

[component.front.tool.spark.limits]
memory = "32MiB"
concurrency = 8

[component.front.tool.spark.rollout]
steps = [10, 100]

[component.cart]
source = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

[component.internal]
source = "/abs/internal.wasm"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("/apps/shop/spin.toml"))
}

fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in text");
    text[..at].matches('\n').count() + 1
}

/// The diagnostics of a refused manifest, as `(line, message)`.
fn refusals(text: &str) -> Vec<(usize, String)> {
    let err = parse(text).expect_err("manifest should be refused");
    err.diagnostics()
        .iter()
        .map(|d| (d.line, d.message.clone()))
        .collect()
}

/// The single diagnostic of a refused manifest.
fn refusal(text: &str) -> (usize, String) {
    let all = refusals(text);
    assert_eq!(all.len(), 1, "expected one diagnostic, got {all:?}");
    all.into_iter().next().unwrap()
}

/// A minimal app with `component` appended to its one component's table.
fn app(component: &str) -> String {
    format!(
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n{component}\n"
    )
}

#[test]
fn a_full_manifest_maps_onto_modules() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.kind, ManifestKind::Spin);
    assert_eq!(m.application.as_deref(), Some("shop"));
    assert_eq!(m.node.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(m.node.admin.to_string(), "127.0.0.1:19090");
    assert_eq!(m.text, GOOD);
    // The private-only component is not served.
    let ids: Vec<&str> = m.modules.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["cart", "front"]);
    assert_eq!(
        m.variables["greeting"],
        VariableSpec {
            default: Some("hej".into()),
            required: false,
            secret: false
        }
    );
    assert!(m.variables["api_token"].required && m.variables["api_token"].secret);

    let front = m.module("front").unwrap();
    assert_eq!(
        front.component,
        ComponentRef::File(PathBuf::from("/apps/shop/target/front.wasm"))
    );
    assert_eq!(
        front.trigger,
        Trigger::Http {
            routes: vec![Route::parse("/shop/...").unwrap()]
        }
    );
    assert_eq!(front.spin_base_path.as_deref(), Some("/shop"));
    assert_eq!(front.priority, Priority::Critical);
    assert_eq!(front.weight, 3);
    assert_eq!(front.limits.memory, 32 << 20);
    assert_eq!(front.limits.concurrency, 8);
    assert_eq!(front.rollout.steps, [10.0, 100.0]);
    assert_eq!(front.health.as_deref(), Some("/shop/healthz"));
    assert_eq!(front.missing_imports, MissingImports::Trap);
    assert!(!front.tiering);
    assert_eq!(front.env["MODE"], "prod");
    assert_eq!(front.key_value_stores, ["default", "sessions"]);
    assert_eq!(front.variables["message"], "{{ greeting }}, world");
    assert_eq!(front.variables["plain"], "literal");
    assert!(front.outbound.allows("https", "api.example.com", 443));
    assert_eq!(
        front.files,
        [
            FileMount {
                source: "/apps/shop/static".into(),
                guest_path: "/static".into()
            },
            FileMount {
                source: "/apps/shop/data".into(),
                guest_path: "/etc/data".into()
            },
            FileMount {
                source: "/apps/shop/assets".into(),
                guest_path: "/assets".into()
            },
        ]
    );

    let cart = m.module("cart").unwrap();
    assert_eq!(
        cart.component,
        ComponentRef::Artifact("0".repeat(64)),
        "a deployed manifest's sha256: source is an artifact"
    );
    assert_eq!(
        cart.trigger,
        Trigger::Http {
            routes: vec![
                Route::parse("/shop/cart").unwrap(),
                Route::parse("/shop/api/cart/...").unwrap()
            ]
        }
    );
    assert_eq!(cart.priority, Priority::Normal);
    assert_eq!(cart.missing_imports, MissingImports::Refuse);

    // Stores: every label used, with the tool table's limits or the defaults.
    assert_eq!(m.key_value_stores["default"].max_value_size, 64 << 10);
    assert_eq!(m.key_value_stores["default"].max_keys, 100);
    assert!(m.key_value_stores["default"].fleet);
    assert!(!m.key_value_stores["sessions"].fleet);
    assert_eq!(
        m.key_value_stores["sessions"].max_value_size,
        crate::DEFAULT_KV_MAX_VALUE_SIZE
    );
}

#[test]
fn the_recorded_text_parses_again_the_same() {
    let m = parse(GOOD).unwrap();
    assert_eq!(parse(&m.text).unwrap(), m);
}

#[test]
fn minimal_manifest_takes_the_defaults() {
    let m = parse(&app("")).unwrap();
    assert_eq!(m.node, crate::NodeSettings::default());
    let c = &m.modules[0];
    assert_eq!(c.spin_base_path.as_deref(), Some("/"));
    assert_eq!(c.limits, crate::Limits::default());
    assert!(c.files.is_empty() && c.key_value_stores.is_empty() && c.variables.is_empty());
    assert!(m.key_value_stores.is_empty() && m.variables.is_empty());
    assert!(!c.outbound.allows("https", "example.com", 443));
}

#[test]
fn dispatch_is_on_the_version_key() {
    assert!(crate::is_spin_manifest(GOOD));
    assert!(!crate::is_spin_manifest("version = 1\n"));
    assert!(!crate::is_spin_manifest("not toml ["));
    let (line, message) = refusal("spin_manifest_version = \"1\"\nname = \"old\"\n");
    assert_eq!(line, 1);
    assert!(message.contains("version 1 is not supported"), "{message}");
    let (_, message) = refusal("spin_manifest_version = 3\n");
    assert!(
        message.contains("unsupported spin_manifest_version 3"),
        "{message}"
    );
}

#[test]
fn other_triggers_are_refused_at_their_name() {
    let text = format!(
        "{}[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"c\"\n",
        app("")
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "[[trigger.redis]]"));
    assert!(
        message.contains("trigger type 'redis' is not supported"),
        "{message}"
    );

    let text = app("").replace(
        "[[trigger.http]]",
        "[application.trigger.redis]\naddress = \"redis://x\"\n[[trigger.http]]",
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "[application.trigger.redis]"));
    assert!(message.contains("HTTP triggers only"), "{message}");
}

#[test]
fn unsupported_component_fields_are_refused_with_their_line() {
    for (field, value, says) in [
        ("sqlite_databases", "[\"default\"]", "SQLite"),
        ("ai_models", "[\"llama2-chat\"]", "AI models"),
        ("dependencies", "{ \"a:b/c\" = \"1.0.0\" }", "dependencies"),
        (
            "allowed_http_hosts",
            "[\"example.com\"]",
            "allowed_outbound_hosts",
        ),
        ("exclude_files", "[\"secret/*\"]", "whole directories"),
        ("dependencies_inherit_configuration", "true", "dependencies"),
    ] {
        let text = app(&format!("{field} = {value}"));
        let (line, message) = refusal(&text);
        assert_eq!(line, line_of(&text, field), "{field}");
        assert!(message.contains(field), "{field}: {message}");
        assert!(message.contains(says), "{field}: {message}");
        assert!(message.starts_with("component 'c'"), "{message}");
    }
}

#[test]
fn unknown_fields_are_refused_with_their_line() {
    let text = app("no_such_field = 1");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "no_such_field"));
    assert!(message.contains("no_such_field"), "{message}");
    let text = app("[component.c.tool.spark]\nprioritee = \"critical\"");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "prioritee"));
    assert!(message.contains("prioritee"), "{message}");
}

#[test]
fn remote_sources_cannot_be_fetched() {
    let text = app("").replace(
        "source = \"c.wasm\"",
        "source = { url = \"https://example.com/c.wasm\", digest = \"sha256:abc\" }",
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "source = {"));
    assert!(message.contains("cannot be fetched here"), "{message}");
    assert!(message.contains("https://example.com/c.wasm"), "{message}");

    let text = app("").replace(
        "source = \"c.wasm\"",
        "source = { registry = \"ghcr.io\", package = \"a:b\", version = \"1.0.0\" }",
    );
    assert!(
        refusal(&text)
            .1
            .contains("registry source cannot be fetched")
    );
}

#[test]
fn routes_private_wildcard_and_errors() {
    // A private route is checked but serves nothing; the app still needs a public one.
    let text = app("").replace("route = \"/...\"", "route = { private = true }");
    let (_, message) = refusal(&text);
    assert!(message.contains("serves nothing"), "{message}");

    let text = app("").replace("route = \"/...\"", "route = \"/users/:id\"");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "route ="));
    assert!(message.contains("single-segment wildcards"), "{message}");

    let text = app("").replace("route = \"/...\"", "route = \"nope\"");
    assert!(refusal(&text).1.contains("must start with '/'"));

    let text = app("").replace("route = \"/...\"", "route = { private = false }");
    assert!(refusal(&text).1.contains("{ private = true }"));

    let text = format!(
        "{}[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n",
        app("")
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, text.lines().count() - 1);
    assert!(message.contains("duplicate route /..."), "{message}");
}

#[test]
fn trigger_components_must_be_declared_ids() {
    let text = app("").replace("component = \"c\"", "component = \"nope\"");
    let all = refusals(&text);
    assert!(
        all.iter()
            .any(|(line, m)| *line == line_of(&text, "component = \"nope\"")
                && m.contains("'nope', which is not declared")),
        "{all:?}"
    );
    let text = app("").replace("component = \"c\"", "component = { source = \"x.wasm\" }");
    let all = refusals(&text);
    assert!(
        all.iter()
            .any(|(_, m)| m.contains("inline component table")),
        "{all:?}"
    );
    let text = app("").replace(
        "component = \"c\"\n",
        "executor = { type = \"wagi\" }\ncomponent = \"c\"\n",
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "executor"));
    assert!(message.contains("Wagi"), "{message}");
}

#[test]
fn variables_are_checked() {
    let with_vars = |vars: &str, component: &str| {
        app(component).replace(
            "[[trigger.http]]",
            &format!("[variables]\n{vars}\n[[trigger.http]]"),
        )
    };
    let text = with_vars("x = { default = \"1\", required = true }", "");
    assert!(refusal(&text).1.contains("not both"));
    let text = with_vars("x = { secret = true }", "");
    assert!(
        refusal(&text)
            .1
            .contains("give a default or `required = true`")
    );
    let text = with_vars("BadName = { default = \"1\" }", "");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "BadName"));
    assert!(message.contains("lower_snake_case"), "{message}");
    let text = with_vars("x = { default = \"1\", sekret = true }", "");
    assert!(refusal(&text).1.contains("sekret"));

    let text = with_vars("x = { default = \"1\" }", "variables = { a = \"{{ y }}\" }");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "variables = {"));
    assert!(
        message.contains("{{ y }}, which is not declared"),
        "{message}"
    );
    let text = with_vars("x = { default = \"1\" }", "variables = { a = \"{{ x \" }");
    assert!(refusal(&text).1.contains("unclosed"));
    let text = with_vars("x = { default = \"1\" }", "variables = { a = \"{{ x }}\" }");
    assert_eq!(parse(&text).unwrap().modules[0].variables["a"], "{{ x }}");
}

#[test]
fn files_mount_whole_directories_only() {
    for (entry, source, guest) in [
        ("\"static\"", "/apps/shop/static", "/static"),
        ("\"static/**\"", "/apps/shop/static", "/static"),
        ("\"a/b/**/*\"", "/apps/shop/a/b", "/a/b"),
        ("\"**/*\"", "/apps/shop", "/"),
        (
            "{ source = \"s\", destination = \"/\" }",
            "/apps/shop/s",
            "/",
        ),
    ] {
        let m = parse(&app(&format!("files = [{entry}]"))).unwrap();
        let mount = &m.modules[0].files[0];
        assert_eq!(mount.source, Path::new(source), "{entry}");
        assert_eq!(mount.guest_path, guest, "{entry}");
    }
    for (entry, says) in [
        ("\"static/*.jpg\"", "whole directories"),
        ("\"../outside/**\"", "inside the application directory"),
        ("\"/etc/**\"", "inside the application directory"),
        (
            "{ source = \"s\", destination = \"relative\" }",
            "absolute destination",
        ),
        ("{ source = \"s\" }", "absolute destination"),
        ("42", "directory pattern"),
    ] {
        let text = app(&format!("files = [{entry}]"));
        let (line, message) = refusal(&text);
        assert_eq!(line, line_of(&text, "files"), "{entry}");
        assert!(message.contains(says), "{entry}: {message}");
    }
}

#[test]
fn spark_tool_settings_are_validated() {
    let text = app(
        "[component.c.tool.spark]\npriority = \"urgent\"\nmissing_imports = \"ignore\"\n[component.c.tool.spark.limits]\nmemory = \"1KiB\"",
    );
    let mut all = refusals(&text);
    all.sort();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].0, line_of(&text, "priority"));
    assert!(
        all[0]
            .1
            .contains("component 'c': tool.spark: unknown priority"),
        "{all:?}"
    );
    assert_eq!(all[1].0, line_of(&text, "missing_imports"));
    assert_eq!(all[2].0, line_of(&text, "memory"));

    let text = app("").replace(
        "[[trigger.http]]",
        "[application.tool.spark.node]\nlisten = \"nowhere\"\n[[trigger.http]]",
    );
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "listen"));
    assert!(message.contains("node.listen"), "{message}");

    let text = app("key_value_stores = [\"Bad Label\"]");
    assert!(refusal(&text).1.contains("kebab-case or snake_case"));
}

#[test]
fn outbound_hosts_are_spark_syntax() {
    let text = app("allowed_outbound_hosts = [\"redis://cache:6379\"]");
    let (line, message) = refusal(&text);
    assert_eq!(line, line_of(&text, "allowed_outbound_hosts"));
    assert!(message.contains("scheme"), "{message}");
    let text = app("allowed_outbound_hosts = [\"https://{{ host }}\"]");
    assert!(
        refusal(&text)
            .1
            .contains("variables in allowed_outbound_hosts")
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text =
        app("sqlite_databases = [\"default\"]\nai_models = [\"m\"]\nkey_value_stores = [\"BAD\"]");
    assert_eq!(refusals(&text).len(), 3);
}

#[test]
fn load_checks_sources_and_mounts_on_disk() {
    let dir = std::env::temp_dir().join(format!("spark-spin-load-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("static")).unwrap();
    std::fs::write(dir.join("c.wasm"), b"not checked here").unwrap();
    std::fs::write(dir.join("file.txt"), b"x").unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, app("files = [\"static\"]")).unwrap();
    Manifest::load(&path).unwrap();

    let text = app("files = [\"file.txt\", \"missing/**\"]").replace("c.wasm", "gone.wasm");
    std::fs::write(&path, &text).unwrap();
    let err = Manifest::load(&path).unwrap_err();
    let d = err.diagnostics();
    assert_eq!(d.len(), 3, "{d:?}");
    assert_eq!(d[0].line, line_of(&text, "source"));
    assert!(d[0].message.contains("gone.wasm cannot be read"), "{d:?}");
    assert!(
        d[1].message.contains("file.txt is not a directory"),
        "{d:?}"
    );
    assert!(d[2].message.contains("missing cannot be read"), "{d:?}");
    assert!(err.to_string().starts_with(&format!("{}:", path.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_manifests_are_refused_not_panicked_on() {
    for text in [
        "spin_manifest_version = 2\n",
        "spin_manifest_version = 2\n[application]\n",
        "spin_manifest_version = 2\napplication = 3\n",
        "spin_manifest_version = 2\n[application]\nname = \"\"\n",
        "spin_manifest_version = 2\n[application]\nname = \"a\"\ntrigger = 1\n",
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[trigger]\nhttp = 5\n",
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[[trigger.http]]\nroute = 7\ncomponent = \"Bad_ID\"\n[component.Bad_ID]\nsource = 1\n",
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[application.trigger]\nhttp = \"x\"\n",
        "spin_manifest_version = 2\n[application]\nname = \"a\"\n[[trigger.http]]\nroute = \"/\u{e9}/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"\u{1F600}.wasm\"\nfiles = [{ source = \"..\", destination = \"/\" }]\n",
        "spin_manifest_version = -2\n",
        "spin_manifest_version = 2.0\n",
    ] {
        match parse(text) {
            Err(ManifestError::Invalid { diagnostics, .. }) => {
                assert!(!diagnostics.is_empty(), "{text}");
                for d in diagnostics {
                    assert!(
                        d.line >= 1 && d.line <= text.lines().count().max(1),
                        "{text}: {d}"
                    );
                }
            }
            Err(other) => panic!("{text}: {other}"),
            Ok(m) => assert!(!m.modules.is_empty(), "{text}"),
        }
    }
}
