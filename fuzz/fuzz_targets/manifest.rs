//! Fuzz target `manifest`: any text as a `spark.toml` ([`Manifest::parse`], pure).
//!
//! A refusal is fine; a panic is a bug. Beyond not panicking it checks what the rest of Spark
//! takes on trust: every diagnostic points inside the text (1-based line and column), and a
//! manifest that passed validation gives a route table without duplicates (the node's
//! `Snapshot` panics on one, trusting validation), parses again to itself from its recorded
//! text (what a release stores and a restart reads back), and routes each of its own routes.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use spark_manifest::{Manifest, RouteTable, Trigger};

const SOURCE: &str = "/fuzz/spark.toml";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Manifest::parse(&text, Path::new(SOURCE)) {
        Err(error) => check_refusal(&text, &error),
        Ok(manifest) => check_accepted(&manifest),
    }
});

fn check_refusal(text: &str, error: &spark_manifest::ManifestError) {
    let rendered = error.to_string();
    let lines = text.split('\n').count();
    assert!(!error.diagnostics().is_empty(), "a refusal says why");
    for d in error.diagnostics() {
        assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}", d.line);
        assert!(d.column >= 1, "column {}", d.column);
        assert!(rendered.contains(&d.message));
    }
}

fn check_accepted(manifest: &Manifest) {
    let again = Manifest::parse(&manifest.text, Path::new(SOURCE))
        .expect("a validated manifest's own text validates");
    assert_eq!(&again, manifest, "parsing is deterministic");
    let entries = manifest
        .modules
        .iter()
        .enumerate()
        .flat_map(|(index, spec)| match &spec.trigger {
            Trigger::Http { routes } => routes.iter().map(|r| (r.clone(), index)).collect(),
            Trigger::Schedule { .. } => Vec::new(),
        });
    let table = match RouteTable::new(entries) {
        Ok(table) => table,
        Err(duplicate) => panic!("duplicate route {duplicate} passed validation"),
    };
    for (route, _) in table.iter() {
        let path = route.to_string();
        let (found, _) = table.lookup_route(&path).expect("a route serves itself");
        assert!(found.matches(&path));
    }
}
