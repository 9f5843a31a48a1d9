//! kill -9 against a real process: `store-crash-helper` loops deploying and promoting; the test
//! SIGKILLs it at random moments, reopens the store and checks it is consistent and lost
//! nothing the helper had been told was committed.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spark_store::{ReleaseId, Store};

const ROUNDS: usize = 40;
/// The helper's gc keeps this many newest releases.
const HELPER_KEEP: usize = 3;

struct Helper {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Helper {
    fn start(dir: &Path) -> Helper {
        let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-helper"))
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start store-crash-helper");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper { child, lines }
    }

    /// Waits until the helper acknowledged `n` promotions in this run.
    fn wait_for_promotions(&mut self, n: usize, seen: &mut Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut promoted = 0;
        while promoted < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    promoted += usize::from(line.starts_with("current "));
                    seen.push(line);
                }
                Err(e) => panic!(
                    "helper made no progress ({e}); exit: {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    /// SIGKILL, reap, and collect every line it printed before dying.
    fn kill(mut self, seen: &mut Vec<String>) {
        self.child.kill().expect("SIGKILL the helper");
        let status = self.child.wait().unwrap();
        // Killed by our SIGKILL, not exited on its own (an error would be a failure too).
        assert_eq!(
            status.signal(),
            Some(9),
            "helper was not killed: {status:?}"
        );
        seen.extend(self.lines.iter());
    }
}

/// xorshift64 seeded from the clock; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn last_id(lines: &[String], prefix: &str) -> Option<ReleaseId> {
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|id| ReleaseId::parse(id).unwrap())
}

#[test]
fn kill_9_at_random_moments_leaves_a_consistent_store() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed: {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut acknowledged: Vec<String> = Vec::new();

    for round in 0..ROUNDS {
        let mut helper = Helper::start(&store_dir);
        let mut seen = Vec::new();
        helper.wait_for_promotions(1 + rng.below(2) as usize, &mut seen);
        std::thread::sleep(Duration::from_micros(rng.below(40_000)));
        helper.kill(&mut seen);
        acknowledged.extend(seen);
        check_consistent(&store_dir, &acknowledged, round);
    }
}

fn check_consistent(dir: &Path, acknowledged: &[String], round: usize) {
    let ctx = format!("after kill in round {round}");
    let leftovers = crate::files_under(dir)
        .iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .count();
    // A crash is not damage: the strict open must succeed.
    let store = Store::open(dir).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));

    // No temporary file survives the open; every file under a final name verifies.
    let artifacts_root = store.artifacts().root().to_owned();
    for path in crate::files_under(&artifacts_root) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp-"),
            "{ctx}: temp file left: {}",
            path.display()
        );
    }
    for digest in store.artifacts().list().unwrap() {
        store
            .artifacts()
            .verify(&digest)
            .unwrap_or_else(|e| panic!("{ctx}: partial artifact under its final name: {e}"));
    }

    // Releases are 1..=n with no gaps, newest first, and every acknowledged one is there.
    let releases = store.releases().unwrap();
    let numbers: Vec<u64> = releases.iter().map(|r| r.number).collect();
    let expected: Vec<u64> = (1..=releases.len() as u64).rev().collect();
    assert_eq!(numbers, expected, "{ctx}");
    if let Some(id) = last_id(acknowledged, "release ") {
        assert!(
            store.release(&id).unwrap().is_some(),
            "{ctx}: lost acknowledged release {id}"
        );
    }

    // The pointer exists, its artifacts verify, and it is not older than the last
    // acknowledged promotion.
    let state = store.state().unwrap();
    let current = state
        .current
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: no current release"));
    let current_release = store.release(&current).unwrap().expect("current exists");
    assert!(
        store.verify_release(&current).unwrap().is_complete(),
        "{ctx}"
    );
    if let Some(acked) = last_id(acknowledged, "current ") {
        assert!(
            current.number() >= acked.number(),
            "{ctx}: {current} older than acked {acked}"
        );
    }

    // The rollout was written in the same transaction as the pointer: it must belong to it.
    let rollout = String::from_utf8(state.rollout.expect("rollout")).unwrap();
    let promoted = format!("promoted {current}");
    let canary_over = format!(" over {current}");
    let ok =
        rollout == promoted || (rollout.starts_with("canary ") && rollout.ends_with(&canary_over));
    assert!(
        ok,
        "{ctx}: rollout {rollout:?} does not belong to current {current}"
    );
    if let Some(canary) = rollout
        .strip_prefix("canary ")
        .and_then(|r| r.split(' ').next())
    {
        let canary = ReleaseId::parse(canary).unwrap();
        assert!(store.release(&canary).unwrap().is_some(), "{ctx}");
    }

    // The promotion event was committed with the pointer: the newest promote names it.
    let last_promote = store
        .events(50)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "promote")
        .expect("a promote event");
    assert_eq!(last_promote.release.as_ref(), Some(&current), "{ctx}");

    // Newest releases (and current) are complete; older ones verify or are cleanly missing,
    // never corrupt.
    for (i, r) in releases.iter().enumerate() {
        let check = store.verify_release(&r.id).unwrap();
        assert!(
            check.corrupt.is_empty(),
            "{ctx}: {} has corrupt artifacts",
            r.id
        );
        if i < HELPER_KEEP || r.id == current_release.id {
            assert!(check.is_complete(), "{ctx}: {} lost artifacts", r.id);
        }
        assert_eq!(
            check.missing.is_empty(),
            store.rollbackable(&r.id).unwrap(),
            "{ctx}"
        );
    }
    assert!(store.history("app").unwrap().is_some(), "{ctx}");
    eprintln!(
        "round {round}: {} releases, current {current}, rollout {rollout:?}, {leftovers} temp \
         files cleaned",
        releases.len()
    );
}
