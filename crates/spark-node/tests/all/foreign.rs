//! Components built with other toolchains, served unmodified next to a Rust guest: JavaScript
//! (ComponentizeJS, a SpiderMonkey build) and Python (componentize-py, CPython). Both import
//! the whole `wasi:http/proxy` world and weigh 13-18 MB, so they also exercise the pool's sizes.
//! Built by `scripts/build-foreign-guests.sh` (run by `make test`).

use spark_testkit::{TestNode, get, post};

const MANIFEST: &str = r#"
version = 1

[[module]]
id = "js"
component = "{guest:hello-js}"
routes = ["/js/..."]
[module.env]
GREETING = "Hej"

[[module]]
id = "py"
component = "{guest:hello-py}"
routes = ["/py/..."]
[module.env]
GREETING = "Hola"

[[module]]
id = "rust"
component = "{guest:hello}"
routes = ["/rust"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_and_python_components_serve_unmodified() {
    let node = TestNode::start(MANIFEST).await.unwrap();
    for (lang, route, greeting, name) in [
        ("js", "/js/items/7", "Hej", "JS"),
        ("python", "/py/items/7", "Hola", "Python"),
    ] {
        let reply = get(&node.url(route)).await.unwrap();
        assert_eq!(reply.status, 200, "{lang}: {}", reply.text());
        assert_eq!(
            reply.text(),
            format!("{greeting} from {name}: GET {route}\n")
        );
        assert_eq!(reply.headers.get("x-lang").unwrap(), lang);
    }
    // A body bigger than one stream chunk goes through both guests and back intact.
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for route in ["/js/echo", "/py/echo"] {
        let reply = post(&node.url(route), &body).await.unwrap();
        assert_eq!(reply.status, 200, "{route}");
        assert_eq!(reply.body.len(), body.len(), "{route}");
        assert!(
            reply.body[..] == body[..],
            "{route}: body changed on the way"
        );
    }
    // Many requests at once: each gets its own instance of the large component.
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let url = node.url(if i % 2 == 0 { "/js/x" } else { "/py/x" });
            tokio::spawn(async move { get(&url).await.map(|r| r.status) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), 200);
    }
    assert_eq!(get(&node.url("/rust")).await.unwrap().status, 200);
    node.stop().await;
}
