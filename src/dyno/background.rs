//! Where background dynos run. Workers, clock processes, one-off and release-phase dynos run on a runtime of their
//! own, so that a busy worker never occupies the threads that serve requests, and the kernel schedules its threads
//! at niceness 10: a runnable background thread weighs about a tenth of a thread of the router, the API or a web
//! dyno. The scheduling stays work-conserving (on a host with spare CPU a background dyno gets every core it asks
//! for) and fair (under full load it still gets its tenth). Linux's `SCHED_IDLE` took a busy worker's p99 cost on a
//! healthy app from 1.8x to 1.24x of the machine's floor, but starves background dynos whenever the host is busy:
//! a worker would stop making progress under web load. On top of the weight, while the router serves requests a
//! background guest that keeps the CPU takes its tenth in short turns with its thread asleep in between
//! (`runtime/share.rs`), so requests never wait for the kernel to preempt it. Web dynos stay on the server's
//! runtime, next to the router that feeds them.

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

/// How much nicer than the server's threads background dynos' threads are.
const NICENESS: i32 = 10;

/// Lowers the calling thread's priority (on Linux, niceness is per thread). Raising one's niceness needs no
/// privilege; failing to is harmless (the dyno then runs at the server's priority).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority and gettid only read their integer arguments.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICENESS);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[tokio::test]
    async fn background_threads_run_nicer_than_the_server() {
        let niceness = || {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // The fields after the command's closing parenthesis; niceness is the 19th field (index 16 here).
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            fields[16].parse::<i32>().unwrap()
        };
        let server = niceness();
        let background = super::spawn(async move { niceness() }).await.unwrap();
        assert_eq!(background, (server + super::NICENESS).min(19));
    }
}
