//! Many registered modules: a restarted node registers the modules whose code its AOT cache
//! holds without loading any, serves a never-loaded one on its first request (from the cache
//! on disk), and its control loop and predictor plan only the modules that are active.
//! Clients that hang up while their module loads leave nothing held, and clients that ask
//! for module after module (one at a time or all at once) keep loaded code within the
//! predictor's budget between its revisions.

use std::time::Duration;

use spark_runtime::PoolingMode;
use spark_testkit::{TestNode, get, guest, metric};
use tokio::io::AsyncWriteExt;

/// Enough to show the shape; every one is compiled once at the first start.
const MODULES: usize = 100;

/// The `hello` guest with a custom section naming `index` appended: a component of its own
/// (its own digest: nothing shared by compile dedup).
fn distinct(hello: &[u8], index: usize) -> Vec<u8> {
    let (name, data) = (b"spark-test", format!("module {index}"));
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(data.as_bytes());
    assert!(section.len() < 128, "one LEB128 byte for the size");
    let mut bytes = hello.to_vec();
    bytes.extend_from_slice(&[0, section.len() as u8]);
    bytes.extend_from_slice(&section);
    bytes
}

/// Writes `count` distinct copies of `hello` into `dir`: their modules `m-0`, `m-1`, ...
/// (routes `/m-<i>/...`) as manifest text.
fn copies(dir: &std::path::Path, count: usize) -> String {
    let hello = std::fs::read(guest("hello")).unwrap();
    let mut modules = String::new();
    for i in 0..count {
        let path = dir.join(format!("m-{i}.wasm"));
        std::fs::write(&path, distinct(&hello, i)).unwrap();
        modules.push_str(&format!(
            "\n[[module]]\nid = \"m-{i}\"\ncomponent = \"{}\"\nroutes = [\"/m-{i}/...\"]\n",
            path.display()
        ));
    }
    modules
}

/// Asks each of the first `count` copies for its page, which each must serve.
async fn every_copy_serves(node: &TestNode, count: usize) {
    for i in 0..count {
        let reply = get(&node.url(&format!("/m-{i}/"))).await.unwrap();
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "Hello from Spark!\n")
        );
    }
}

fn loaded(node: &TestNode) -> Vec<String> {
    node.node
        .snapshot()
        .modules
        .iter()
        .filter(|slot| slot.residency.is_loaded())
        .map(|slot| slot.id().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_registers_cached_modules_without_loading_and_plans_only_active_ones() {
    let components = tempfile::tempdir().unwrap();
    let mut manifest = String::from("version = 1\n[predictor]\ninterval = \"1s\"\n");
    manifest.push_str(&copies(components.path(), MODULES));
    manifest.push_str(
        "\n[[module]]\nid = \"shop\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/shop\"]\npriority = \"critical\"\n",
    );
    let first = TestNode::start(&manifest).await.unwrap();
    let digests: std::collections::HashSet<String> = first
        .node
        .snapshot()
        .modules
        .iter()
        .map(|slot| slot.info().digest)
        .collect();
    assert_eq!(
        digests.len(),
        MODULES + 1,
        "every copy is its own component"
    );
    let dir = first.stop().await;

    let node = TestNode::start_in_manual(&manifest, dir).await.unwrap();
    assert_eq!(node.node.snapshot().modules.len(), MODULES + 1);
    assert_eq!(
        loaded(&node),
        ["shop"],
        "only the critical module is loaded at startup"
    );
    // The predictor pre-warms nothing it has never seen called.
    node.advance(Duration::from_secs(3)).await;
    assert_eq!(loaded(&node), ["shop"]);

    let last = format!("/m-{}/", MODULES - 1);
    let reply = get(&node.url(&last)).await.unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "Hello from Spark!\n")
    );
    let cold = reply
        .headers
        .get("spark-cold-start")
        .expect("a never-loaded module's first request is a cold start")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cold.starts_with("load; "), "from the AOT cache: {cold}");
    let slot = node
        .node
        .snapshot()
        .module(&format!("m-{}", MODULES - 1))
        .cloned()
        .unwrap();
    assert_eq!(slot.info().world, "wasi:http/proxy");
    assert_eq!(slot.residency.cold_starts().compiles, 0, "nothing compiled");

    node.advance(Duration::from_secs(2)).await;
    let mut active = loaded(&node);
    active.sort();
    assert_eq!(active, [format!("m-{}", MODULES - 1), "shop".to_owned()]);
    let planned: Vec<String> = node
        .node
        .control()
        .unwrap()
        .state()
        .observations
        .iter()
        .map(|o| o.id.clone())
        .collect();
    assert!(
        planned.len() == 2
            && planned.contains(&"shop".to_owned())
            && planned.contains(&format!("m-{}", MODULES - 1)),
        "the control loop plans the active modules only: {planned:?}"
    );
    // Nor does either read the idle modules' counters: only those with work, those planned
    // and the critical one.
    let read = node.node.control().unwrap().state().modules_read;
    assert!(
        (1..=2).contains(&read),
        "the control loop read {read} modules' counters in its last tick, of {}",
        MODULES + 1
    );
    let warmth = node.node.warmth().state();
    assert!(
        (1..=2).contains(&warmth.modules_read),
        "the predictor looked at {} modules in its last revision",
        warmth.modules_read
    );
    let mut described: Vec<&str> = warmth.modules.keys().map(String::as_str).collect();
    described.sort();
    assert_eq!(
        described,
        [format!("m-{}", MODULES - 1).as_str(), "shop"],
        "the predictor plans the active modules only"
    );
    node.stop().await;
}

/// Clients that hang up while the module they asked for is still loading from disk (its first
/// request after a restart) leave no node slot or reserved memory behind, and the module
/// serves the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_leaving_during_a_lazy_load_leave_nothing_held() {
    const COPIES: usize = 6;
    let components = tempfile::tempdir().unwrap();
    let manifest = format!("version = 1\n{}", copies(components.path(), COPIES));
    let dir = TestNode::start(&manifest).await.unwrap().stop().await;
    let node = TestNode::start_in(&manifest, dir, PoolingMode::Auto)
        .await
        .unwrap();
    assert!(loaded(&node).is_empty(), "nothing loaded at startup");

    hang_up_on_every_module(&node, COPIES).await;
    every_copy_serves(&node, COPIES).await;
    node.stop().await;
}

fn loaded_code(node: &TestNode) -> (u64, u64, u64) {
    let figures = node.node.warmth().state().loaded_code;
    let limit = figures.limit.expect("the predictor bounds loaded code");
    (figures.bytes, limit, figures.evictions)
}

/// A client asking for every registered module in turn, the predictor's revision far away:
/// each load on demand makes room before its request runs, least recently used first, so
/// loaded code stays within the budget (the module just loaded may top it alone) and memory
/// follows the budget, not the modules registered. The same all at once, and the critical
/// module is never evicted, and clients that hang up mid-walk leave nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_asking_for_module_after_module_keep_loaded_code_within_the_budget() {
    const COPIES: usize = 16;
    const FIT: u64 = 3;
    let components = tempfile::tempdir().unwrap();
    let mut modules = copies(components.path(), COPIES);
    modules.push_str(
        "\n[[module]]\nid = \"shop\"\ncomponent = \"{guest:hello}\"\nroutes = [\"/shop\"]\npriority = \"critical\"\n",
    );
    // The first start builds (and loads) every copy: what one costs on the ledger.
    let first = TestNode::start(&format!("version = 1\n{modules}"))
        .await
        .unwrap();
    let each = first.node.warmth().state().loaded_code.bytes / COPIES as u64;
    assert!(each >= 64 << 10, "{each}");
    let dir = first.stop().await;

    // Room for three copies and a half; no revision (a manual clock that never moves).
    let budget = FIT * each + each / 2;
    let manifest = format!(
        "version = 1\n[predictor]\nmemory_budget = \"{}KiB\"\n{modules}",
        budget / 1024
    );
    let node = TestNode::start_in_manual(&manifest, dir).await.unwrap();
    let (_, limit, _) = loaded_code(&node);
    assert!(
        limit >= budget - 1024 && limit <= budget,
        "{limit} vs {budget}"
    );
    for i in 0..COPIES {
        let reply = get(&node.url(&format!("/m-{i}/"))).await.unwrap();
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "Hello from Spark!\n")
        );
        let (bytes, limit, _) = loaded_code(&node);
        assert!(bytes <= limit, "after /m-{i}/: {bytes} loaded over {limit}");
        let mut expected: Vec<String> = (i.saturating_sub(FIT as usize - 1)..=i)
            .map(|k| format!("m-{k}"))
            .collect();
        expected.push("shop".to_owned());
        let mut now = loaded(&node);
        now.sort();
        expected.sort();
        assert_eq!(
            now, expected,
            "the three most recently used, and the critical one"
        );
    }
    let (_, _, evictions) = loaded_code(&node);
    assert_eq!(evictions, COPIES as u64 - FIT);
    // The most recently used stays warm; the first is loaded again, and serves.
    let warm = get(&node.url(&format!("/m-{}/", COPIES - 1)))
        .await
        .unwrap();
    assert!(!warm.headers.contains_key("spark-cold-start"));
    let again = get(&node.url("/m-0/")).await.unwrap();
    assert_eq!(again.status, 200);
    assert!(again.headers.contains_key("spark-cold-start"));

    // All at once: every request served, and within the budget once they are.
    let burst = (0..COPIES).map(|i| {
        let url = node.url(&format!("/m-{i}/"));
        async move { get(&url).await.unwrap().status }
    });
    let statuses = futures::future::join_all(burst).await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let (bytes, limit, _) = loaded_code(&node);
    assert!(
        bytes <= limit,
        "after the burst: {bytes} loaded over {limit}"
    );
    assert!(loaded(&node).contains(&"shop".to_owned()));
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    let gauge = |name: &str| metric(&page, name).unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(gauge("spark_loaded_code_bytes"), bytes as f64);
    assert_eq!(gauge("spark_loaded_code_limit_bytes"), limit as f64);
    assert!(gauge("spark_loaded_code_evictions_total") >= (2 * COPIES) as f64 - 2.0 * FIT as f64);

    // Clients that ask for every module and hang up at once, while the loads evict one
    // another: nothing held afterwards, loaded code within the budget, and modules serve.
    hang_up_on_every_module(&node, COPIES).await;
    let (bytes, limit, _) = loaded_code(&node);
    assert!(
        bytes <= limit,
        "after clients left: {bytes} loaded over {limit}"
    );
    for i in [0, COPIES / 2, COPIES - 1] {
        let reply = get(&node.url(&format!("/m-{i}/"))).await.unwrap();
        assert_eq!(reply.status, 200);
    }
    node.stop().await;
}

/// A first start builds every module (compiled, instantiated once, checked) and keeps what
/// the predictor's budget holds: each build makes room as a request's load does, so a node
/// whose modules' code outgrows its budget does not hold all of it while it starts (100
/// JavaScript components held 3.6 GB at once before), and every module serves afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_keeps_only_what_the_budget_holds_of_the_modules_it_built() {
    const COPIES: usize = 12;
    const FIT: u64 = 3;
    let components = tempfile::tempdir().unwrap();
    let modules = copies(components.path(), COPIES);
    // What one copy costs on the ledger, from a first start whose budget holds them all.
    let first = TestNode::start(&format!("version = 1\n{modules}"))
        .await
        .unwrap();
    let each = first.node.warmth().state().loaded_code.bytes / COPIES as u64;
    assert_eq!(loaded(&first).len(), COPIES, "all fit the default budget");
    first.stop().await;

    // A first start again (a data directory of its own: every copy built anew), with room
    // for three copies and a half.
    let budget = FIT * each + each / 2;
    let node = TestNode::start_manual(&format!(
        "version = 1\n[predictor]\nmemory_budget = \"{}KiB\"\n{modules}",
        budget / 1024
    ))
    .await
    .unwrap();
    let (bytes, limit, evictions) = loaded_code(&node);
    assert!(bytes <= limit, "{bytes} loaded over {limit}");
    let kept = loaded(&node).len() as u64;
    assert!((1..=FIT).contains(&kept), "{kept} of {COPIES} kept");
    assert_eq!(
        evictions,
        COPIES as u64 - kept,
        "every other build made room"
    );
    every_copy_serves(&node, COPIES).await;
    node.stop().await;
}

/// `hello` with its greeting's bytes changed in place: a component of the same size that
/// answers something else.
fn shouting(hello: &[u8]) -> Vec<u8> {
    let (from, to) = (b"Hello from Spark!", b"HELLO FROM SPARK!");
    let at = hello
        .windows(from.len())
        .position(|w| w == from)
        .expect("hello's greeting is in its data");
    let mut bytes = hello.to_vec();
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

/// A restart trusts a component file its store has a record of only while nothing `stat`
/// reports about the file changed. Here the file is rewritten in place between two starts
/// with bytes of the same size and its modification time set back, so only its change time
/// tells: the node hashes it again and serves the new bytes. The unchanged file beside it is
/// still served, and garbage of the same size is refused with an error naming its module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_rewritten_between_starts_is_hashed_again_and_its_new_bytes_serve() {
    use std::io::Write;
    let components = tempfile::tempdir().unwrap();
    let hello = std::fs::read(guest("hello")).unwrap();
    let (changing, steady) = (
        components.path().join("changing.wasm"),
        components.path().join("steady.wasm"),
    );
    std::fs::write(&changing, &hello).unwrap();
    std::fs::write(&steady, distinct(&hello, 1)).unwrap();
    let manifest = format!(
        "version = 1\n\
         [[module]]\nid = \"changing\"\ncomponent = \"{}\"\nroutes = [\"/changing\"]\n\
         [[module]]\nid = \"steady\"\ncomponent = \"{}\"\nroutes = [\"/steady\"]\n",
        changing.display(),
        steady.display()
    );
    // Old enough when the node reads them that their stamps are recorded (a file modified
    // just before it is read is hashed again next time instead).
    tokio::time::sleep(spark_store::RACY_MARGIN * 3).await;
    let first = TestNode::start(&manifest).await.unwrap();
    let reply = get(&first.url("/changing")).await.unwrap();
    assert_eq!(reply.text(), "Hello from Spark!\n");
    let dir = first.stop().await;
    let store_dir = spark_store::DataDir::new(dir.path().join("data")).store();
    {
        let store = spark_store::Store::open(&store_dir).unwrap();
        let records = store.source_records().unwrap();
        let record = &records[changing.to_str().unwrap()];
        assert_eq!(record.digest, spark_store::Digest::of(&hello));
        assert_eq!(records.len(), 2, "both files recorded: {records:?}");
    }

    // Same size, same inode, modification time set back: only the change time moved.
    let modified = std::fs::metadata(&changing).unwrap().modified().unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&changing)
        .unwrap();
    (&file).write_all(&shouting(&hello)).unwrap();
    file.set_modified(modified).unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(&changing).unwrap().modified().unwrap(),
        modified
    );
    let node = TestNode::start_in(&manifest, dir, PoolingMode::Auto)
        .await
        .unwrap();
    let reply = get(&node.url("/changing")).await.unwrap();
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "HELLO FROM SPARK!\n"),
        "the rewritten file's bytes serve"
    );
    let reply = get(&node.url("/steady")).await.unwrap();
    assert_eq!(reply.text(), "Hello from Spark!\n");
    let dir = node.stop().await;

    // Garbage of the same size: a clear refusal naming the module, not the old code.
    std::fs::write(&changing, vec![0x5a; hello.len()]).unwrap();
    let refused = TestNode::start_in(&manifest, dir, PoolingMode::Auto).await;
    let error = spark_error::chain(&refused.err().expect("garbage is refused")).to_string();
    assert!(error.contains("changing"), "{error}");
}

/// A client for each of modules `m-0` .. `m-{copies - 1}` that sends its request and hangs up
/// at once; returns when the node holds no slot and no reserved memory any more.
async fn hang_up_on_every_module(node: &TestNode, copies: usize) {
    for i in 0..copies {
        let mut stream = tokio::net::TcpStream::connect(node.node.http_addr)
            .await
            .unwrap();
        let request = format!("GET /m-{i}/ HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        drop(stream);
    }
    spark_testkit::wait_until(
        Duration::from_secs(10),
        "the node's gauges at rest",
        || async {
            let page = get(&node.admin_url("/metrics")).await.unwrap().text();
            let gauge = |name: &str| metric(&page, name).unwrap_or_else(|| panic!("no {name}"));
            gauge("spark_node_slots_in_use") == 0.0
                && gauge("spark_node_memory_reserved_bytes") == 0.0
        },
    )
    .await;
}

/// A first start compiles every module, and the heap those compiles freed is given back once
/// they are over (glibc keeps it otherwise: B7's first start at 3,000 modules held ~420 MB of
/// it); the node serves every module afterwards. The trim counters are the process's, shared
/// with the other tests' nodes, so this checks that one more trim ran, not which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heap_a_first_start_compiled_with_is_given_back_once_compiling_settles() {
    const COPIES: usize = 12;
    let components = tempfile::tempdir().unwrap();
    let manifest = format!("version = 1\n{}", copies(components.path(), COPIES));
    let node = TestNode::start_manual(&manifest).await.unwrap();
    assert!(
        node.node.runtime.code_churn() >= COPIES as u64,
        "each compile counts as churn"
    );
    let (trims_before, _) = spark_runtime::heap::trims();
    // The first check sees the compiles; the next, with nothing compiled since, trims.
    node.advance(Duration::from_secs(4)).await;
    let (trims_after, _) = spark_runtime::heap::trims();
    assert!(
        trims_after > trims_before,
        "a trim once the compiles settled"
    );
    let page = get(&node.admin_url("/metrics")).await.unwrap().text();
    assert!(metric(&page, "spark_heap_trims_total").is_some_and(|n| n >= 1.0));
    assert!(metric(&page, "spark_heap_trimmed_bytes_total").is_some());
    every_copy_serves(&node, COPIES).await;
    node.stop().await;
}
