//! A scheduled background job (a `wasi:cli/command` component): "syncs the inventory" by
//! reconciling a synthetic stock list, which costs a configurable amount of CPU.
//!
//! Environment: `ITEMS` (how many items to reconcile, default 50_000), `STORE` (a label).
//! Prints one line per run, e.g. `inventory-sync store=demo items=50000 changed=1234`.
//! Exits non-zero when `FAIL=1`, so tests can see a failing job reported.

use std::hint::black_box;

fn main() {
    let items: u64 = std::env::var("ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let store = std::env::var("STORE").unwrap_or_else(|_| "default".into());
    if std::env::var("FAIL").as_deref() == Ok("1") {
        eprintln!("inventory-sync: upstream unavailable (FAIL=1)");
        std::process::exit(3);
    }
    let mut changed = 0u64;
    let mut state = 0x1234_5678_u64;
    for item in 0..items {
        for _ in 0..64 {
            state = black_box(state.wrapping_mul(6364136223846793005).wrapping_add(item));
        }
        if state % 41 == 0 {
            changed += 1;
        }
    }
    println!("inventory-sync store={store} items={items} changed={changed}");
}
