//! The scheduling priority of threads that run work the node must never wait for: the
//! optimizer's compiles and, with the orchestrator on, background guests. One place for the
//! one system call the idle class takes, so both lower their threads the same way.
//!
//! Decision worth knowing: a low weight is not a yield. At nice 19 a thread weighs 15 against a
//! normal thread's 1024, but a request thread that wakes on a core such a thread holds can
//! still wait out its time slice; a thread in the kernel's idle scheduling class (`SCHED_IDLE`)
//! is preempted as soon as any other thread wants the core, and still progresses (a tiny
//! weight) on a node that is never idle. Measured twice: the optimizer's compiles (B7, p99 to
//! random modules at 1,000 with a compile queued by most requests: 7.5-8.3 ms at nice 19,
//! 4.2-5.3 ms in the idle class) and background guests (B3, a critical module's p99 during a
//! surge against running alone: 1.72-1.91x at nice 19, 0.98-1.04x in the idle class). Moving a
//! thread down needs no privilege; moving it back up would, so neither is ever undone.
//!
//! The price, besides starving such threads while foreground work saturates every CPU: a
//! lowered thread preempted while it holds a lock foreground threads also take (the instance
//! pool's, a log writer's) keeps it until the kernel runs it again, which under saturation
//! takes longer in the idle class than at nice 19 (the kernel has no priority inheritance for
//! these locks). The sections are short; B3 and B7 measure the net effect.

/// Puts the calling thread in the idle scheduling class, or at `fallback_nice` where the kernel
/// refuses that class (not Linux); `fallback_nice` 0 leaves it as it is. Says why in the log
/// when neither works: the thread then runs at normal priority.
pub fn enter_idle_class(what: &str, fallback_nice: i32) {
    if let Err(e) = idle_class() {
        tracing::debug!(error = %e, what, fallback_nice, "no idle scheduling class; using the nice value");
        set_nice(what, fallback_nice);
    }
}

/// Sets the calling thread's nice value (0: leaves it). Says why in the log when it cannot.
pub fn set_nice(what: &str, nice: i32) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
        tracing::warn!(error = %e, what, nice, "cannot lower the priority of a thread; it runs at normal priority");
    }
}

/// `sched_setscheduler(0, SCHED_IDLE)` for the calling thread.
#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "one system call on the calling thread, with a valid parameter (SAFETY note)"
)]
fn idle_class() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialized `sched_param` that outlives the call; pid 0 is
    // the calling thread; the call reads `param` and changes nothing else in this process.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn idle_class() -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// The scheduling policy of the calling thread (`libc::SCHED_*`), from field 41 of its `/proc`
/// stat line; for tests here and in the crates whose threads this module lowers.
#[cfg(target_os = "linux")]
pub fn current_policy() -> std::io::Result<u32> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    policy_in_stat(&stat)
        .ok_or_else(|| std::io::Error::other("no policy field in /proc/thread-self/stat"))
}

/// The scheduling policy in a thread's `/proc` stat line (field 41).
pub fn policy_in_stat(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(38))
        .and_then(|field| field.parse().ok())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_enters_the_idle_class_and_the_caller_stays_where_it_was() {
        let before = current_policy().unwrap();
        let inside = std::thread::spawn(|| {
            enter_idle_class("test", 19);
            current_policy().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, libc::SCHED_IDLE as u32);
        assert_eq!(current_policy().unwrap(), before);
    }
}
