//! Request bodies as clients send them, and every refusal of a deploy with its message.

use super::*;

const A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const B: &str = "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d";

fn manifest(component: &str) -> String {
    format!(
        "version = 1\n[[module]]\nid = \"hello\"\ncomponent = \"{component}\"\nroutes = [\"/\"]\n"
    )
}

fn request(manifest: String, components: &[(&str, &str)]) -> DeployRequest {
    DeployRequest {
        manifest,
        components: components
            .iter()
            .map(|(m, d)| (m.to_string(), d.to_string()))
            .collect(),
        note: String::new(),
    }
}

#[test]
fn a_deploy_gives_every_module_its_artifact() {
    let checked = request(manifest("hello.wasm"), &[("hello", A)])
        .check()
        .unwrap();
    let (spec, digest) = &checked.modules[0];
    assert_eq!(digest.as_str(), A);
    assert_eq!(spec.component, ComponentRef::Artifact(A.into()));

    let by_reference = request(manifest(&format!("sha256:{A}")), &[])
        .check()
        .unwrap();
    assert_eq!(by_reference.modules[0].1.as_str(), A);
    let overridden = request(manifest(&format!("sha256:{A}")), &[("hello", B)])
        .check()
        .unwrap();
    assert_eq!(
        overridden.modules[0].1.as_str(),
        B,
        "the uploaded digest wins"
    );
}

#[test]
fn refusals_name_the_module_and_why() {
    let e = request(manifest("hello.wasm"), &[]).check().unwrap_err();
    assert_eq!(
        e.to_string(),
        "module 'hello': component hello.wasm is a file on your machine: upload it and pass its digest (spark deploy does)"
    );
    let e = request(manifest("hello.wasm"), &[("hello", &A.to_uppercase())])
        .check()
        .unwrap_err();
    assert!(matches!(e, RequestError::Digest { .. }), "{e:?}");
    assert_eq!(e.to_string(), "module 'hello'");
    let why = spark_error::chain(&e).to_string();
    assert!(
        why.starts_with("module 'hello': invalid digest"),
        "the cause is the store's refusal: {why}"
    );
    let e = request("version = 2\n".into(), &[]).check().unwrap_err();
    assert!(
        e.to_string().starts_with("deployed manifest:1:"),
        "manifest errors point into the text: {e}"
    );
}

#[test]
fn bodies_read_as_clients_send_them() {
    let r: DeployRequest = serde_json::from_str(r#"{"manifest": "version = 1"}"#).unwrap();
    assert!(r.components.is_empty() && r.note.is_empty());
    assert!(serde_json::from_str::<DeployRequest>(r#"{"components": {}}"#).is_err());
    let r: RollbackRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(r.release, None);
    let a: Actor = serde_json::from_str(r#"{"by": "ops"}"#).unwrap();
    assert_eq!(a.by.as_deref(), Some("ops"));
    let q: EventsQuery = serde_json::from_str("{}").unwrap();
    assert_eq!(q.limit, DEFAULT_EVENTS);
}

#[test]
fn rollback_targets_name_a_release_number() {
    assert_eq!(release_number("r3-0123abcd"), Some(3));
    assert_eq!(release_number("r12"), Some(12));
    assert_eq!(release_number("7"), Some(7));
    assert_eq!(release_number("latest"), None);
    assert_eq!(release_number(""), None);
    assert_eq!(release_number("r99999999999999999999999"), None);
}
