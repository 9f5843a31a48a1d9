//! Test helper for the kill -9 tests (`tests/all/crash.rs`): opens the store in the given
//! directory and loops doing what a node does to it during deploys and promotions, printing
//! one line after each call returns, so the test knows what was acknowledged before it killed
//! the process. Not part of the product: it exists because a crash test needs a real process.
//!
//! Each iteration: upload the app component (random size) and the shared one (same bytes each
//! time), sometimes an orphan upload; create a release; start a rollout (rollout := `canary
//! <new> over <current>`); promote it in one commit with its event (current := new, rollout
//! := `promoted <new>`); write a history snapshot; every fifth iteration gc(3). The rollout
//! text names the pointer it belongs with, so a torn promotion is detectable after a crash.
//!
//! Usage: `store-crash-helper <store dir> [max iterations]`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use spark_store::{NewEvent, NewRelease, ReleaseModule, RolloutChange, Store, Transition};

/// Keep-N passed to gc; the crash test relies on this value.
const KEEP: usize = 3;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: store-crash-helper <store dir> [max iterations]");
        return ExitCode::from(2);
    };
    let max: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    match run(&dir, max) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("store-crash-helper: {}", spark_error::chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, max: u64) -> Result<(), spark_store::StoreError> {
    let store = Store::open(dir)?;
    let mut rng = Rng(now_ms() ^ u64::from(std::process::id()).rotate_left(32) | 1);
    let shared = store.artifacts().put(&vec![7u8; 64 * 1024])?;
    println!("opened");
    for _ in 0..max {
        let n = store.latest()?.map_or(1, |r| r.number + 1);
        let size = 1 + rng.below(512 * 1024) as usize;
        let app = store.artifacts().put(&content(n, size))?;
        println!("artifact {app}");
        if rng.below(3) == 0 {
            let orphan = store.artifacts().put(&content(n ^ 0xdead_beef, 4096))?;
            println!("artifact {orphan}");
        }
        let release = store.create_release(NewRelease {
            manifest: format!("# release {n}\n[modules.app]\n[modules.shared]\n"),
            modules: vec![
                ReleaseModule::new("app", app),
                ReleaseModule::new("shared", shared.clone()),
            ],
            author_note: format!("crash helper iteration {n}"),
            created_ms: now_ms(),
        })?;
        println!("release {}", release.id);
        let previous = store
            .current()?
            .map_or_else(|| "none".to_owned(), |id| id.to_string());
        store.put_rollout(format!("canary {} over {previous}", release.id).as_bytes())?;
        println!("rollout {}", release.id);
        store.commit_with_event(
            Transition {
                current: Some(release.id.clone()),
                rollout: RolloutChange::Set(format!("promoted {}", release.id).into_bytes()),
            },
            NewEvent {
                kind: "promote",
                release: Some(&release.id),
                detail: "crash helper",
                at_ms: now_ms(),
            },
        )?;
        println!("current {}", release.id);
        let history = content(n, 1 + rng.below(8192) as usize);
        store.put_history("app", &history)?;
        println!("history {}", history.len());
        if n % 5 == 0 {
            let report = store.gc(KEEP)?;
            println!("gc removed {}", report.removed.len());
        }
    }
    Ok(())
}

/// Deterministic bytes for iteration `n`: distinct per `n` and per size.
fn content(n: u64, size: usize) -> Vec<u8> {
    let mut rng = Rng(n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(size);
    out
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift64: enough randomness for sizes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
