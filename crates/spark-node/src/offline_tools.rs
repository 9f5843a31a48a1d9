//! The node links no offline tool (test only): no crate `spark-node` depends on, directly or
//! through another Spark crate, is the B4 simulator (`spark-sim`), the benchmarks
//! (`spark-bench`), the CLI (`spark-cli`) or the test support (`spark-testkit`), and none has a
//! command-line parser (`clap`: command lines are `spark-cli`'s). So `spark-predict`, which
//! the node links, never depends on `spark-sim`, and `spark-nn` ships no probe binary.
//!
//! The decision worth knowing: the check reads the crates' own `Cargo.toml` (compiled in with
//! `include_str!`) rather than running `cargo tree` or `cargo metadata`: it needs no cargo, no
//! network and no lock file at test time, and a dependency can enter a crate only through its
//! manifest. A Spark crate the node starts to depend on and this list does not know fails the
//! test until it is added, so the walk never silently stops short.

use std::collections::BTreeSet;

/// The manifest of every Spark crate in the node's dependency tree, by package name.
const MANIFESTS: &[(&str, &str)] = &[
    ("spark-node", include_str!("../Cargo.toml")),
    ("spark-api", include_str!("../../spark-api/Cargo.toml")),
    ("spark-error", include_str!("../../spark-error/Cargo.toml")),
    ("spark-fleet", include_str!("../../spark-fleet/Cargo.toml")),
    (
        "spark-manifest",
        include_str!("../../spark-manifest/Cargo.toml"),
    ),
    ("spark-nn", include_str!("../../spark-nn/Cargo.toml")),
    (
        "spark-orchestrator",
        include_str!("../../spark-orchestrator/Cargo.toml"),
    ),
    (
        "spark-predict",
        include_str!("../../spark-predict/Cargo.toml"),
    ),
    (
        "spark-rollout",
        include_str!("../../spark-rollout/Cargo.toml"),
    ),
    (
        "spark-runtime",
        include_str!("../../spark-runtime/Cargo.toml"),
    ),
    ("spark-store", include_str!("../../spark-store/Cargo.toml")),
    ("spark-trace", include_str!("../../spark-trace/Cargo.toml")),
];

/// Offline tools, test support and what only they need: never linked into the node.
const OFFLINE: &[&str] = &[
    "spark-sim",
    "spark-bench",
    "spark-cli",
    "spark-testkit",
    "clap",
];

/// The names of what `manifest` links into its library: `[dependencies]`,
/// `[build-dependencies]` and their per-target forms (not `[dev-dependencies]`).
fn linked(manifest: &str) -> BTreeSet<String> {
    let table: toml::Table = manifest.parse().expect("a Cargo.toml parses");
    let mut sections = vec![&table];
    if let Some(targets) = table.get("target").and_then(toml::Value::as_table) {
        sections.extend(targets.values().filter_map(toml::Value::as_table));
    }
    sections
        .into_iter()
        .flat_map(|section| {
            ["dependencies", "build-dependencies"]
                .into_iter()
                .filter_map(|kind| section.get(kind).and_then(toml::Value::as_table))
        })
        .flat_map(|deps| {
            deps.iter().map(|(key, spec)| {
                // `name = { package = "real-name", ... }` renames a dependency.
                spec.get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(key)
                    .to_owned()
            })
        })
        .collect()
}

/// Every Spark crate the node links, with each one's own dependencies.
fn node_tree() -> Vec<(&'static str, BTreeSet<String>)> {
    let mut seen = BTreeSet::from(["spark-node".to_owned()]);
    let mut todo = vec!["spark-node".to_owned()];
    let mut tree = Vec::new();
    while let Some(name) = todo.pop() {
        let (name, manifest) = MANIFESTS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| {
                panic!("the node depends on `{name}`: add its Cargo.toml to MANIFESTS")
            });
        let deps = linked(manifest);
        for dep in deps.iter().filter(|d| d.starts_with("spark-")) {
            if seen.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
        tree.push((*name, deps));
    }
    tree
}

#[test]
fn the_node_links_no_offline_tool() {
    let tree = node_tree();
    let names: Vec<&str> = tree.iter().map(|(name, _)| *name).collect();
    assert!(
        names.contains(&"spark-predict") && names.contains(&"spark-nn"),
        "{names:?}"
    );
    for (name, deps) in &tree {
        for offline in OFFLINE {
            assert!(
                !deps.contains(*offline),
                "{name} depends on {offline}: the node would link an offline tool"
            );
        }
    }
}

#[test]
fn renamed_and_per_target_dependencies_are_seen() {
    let deps = linked(
        "[package]\nname = \"x\"\n[dependencies]\nsim = { package = \"spark-sim\", path = \"../spark-sim\" }\n\
         [target.'cfg(unix)'.dependencies]\nspark-bench = { path = \"../spark-bench\" }\n\
         [dev-dependencies]\nspark-testkit = { path = \"../spark-testkit\" }\n",
    );
    assert_eq!(
        deps,
        BTreeSet::from(["spark-sim".to_owned(), "spark-bench".to_owned()])
    );
}
