//! Where background dynos run. Workers, clock processes, one-off and release-phase dynos run on a runtime of their
//! own whose threads the kernel schedules as idle work (Linux's `SCHED_IDLE`): any thread of the router, the API or
//! a web dyno that wakes up takes the core from them at once. The scheduling stays work-conserving: on a host with
//! spare CPU a background dyno gets every core it asks for, but a busy loop or a log flood in a worker cannot take
//! the CPU from requests being served (see `scripts/bench-isolation`). Niceness alone was not enough: a nice-19
//! thread keeps its core for a whole time slice when a request wakes up, which more than doubled the p99 of a
//! healthy app beside a busy worker. Web dynos stay on the server's runtime, next to the router that feeds them.

use std::future::Future;
use std::sync::OnceLock;

use tokio::task::JoinHandle;

/// Runs `future` (a background dyno's supervisor) on the background runtime, which starts on first use and lives
/// as long as the process.
pub(super) fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(future)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .thread_name("wasmdyno-background")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("start the background dynos' runtime")
    })
}

/// Makes the calling thread idle work (on Linux, the policy is per thread). Lowering one's own policy needs no
/// privilege; failing to is harmless (the dyno then runs at the server's priority).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler reads the parameter struct, which lives across the call; 0 is the calling thread.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[tokio::test]
    async fn background_threads_are_idle_work() {
        // SAFETY: sched_getscheduler(0) asks about the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        assert_ne!(policy(), libc::SCHED_IDLE);
        let background = super::spawn(async move { policy() }).await.unwrap();
        assert_eq!(background, libc::SCHED_IDLE);
    }
}
