//! The threads that run partitions' slow requests (key generation, PIN hashing,
//! durable writes), at a lower CPU priority than the threads that answer quick
//! ones: when the CPUs are short, an RSA-4096 generation yields to another
//! tenant's signature instead of sharing the CPU with it evenly. How many of one
//! partition's slow requests reach the pool at once is the partition's limit
//! (`[daemon] max_slow_requests_per_partition`), taken before a request is
//! queued here.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The nice value of the pool's threads (0 is the daemon's; 19 the lowest): a
/// thread at 10 gets about a tenth of a CPU's time against one at 0.
pub(crate) const NICE: i32 = 10;

/// A fixed set of threads taking jobs in order.
pub(crate) struct SlowPool {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
}

impl SlowPool {
    /// Starts `threads` threads. If none can be started, jobs run on the
    /// caller's thread instead (off the async worker, as before the pool).
    pub(crate) fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("ihsmd-slow-{i}"))
                .spawn(move || {
                    // On Linux the nice value is the calling thread's alone.
                    if let Err(e) = rustix::process::setpriority_process(None, NICE) {
                        tracing::warn!(error = %e, "cannot lower a slow-request thread's priority");
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking request loses its answer (the caller hears
                        // the connection close), not the thread.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "cannot start a slow-request thread"),
            }
        }
        Self {
            jobs: Mutex::new((started > 0).then_some(tx)),
        }
    }

    /// Queues `job`; gives it back if there is no pool.
    fn send(&self, job: Job) -> Result<(), Job> {
        let tx = self.jobs.lock().ok().and_then(|t| t.clone());
        match tx {
            Some(tx) => tx.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Runs `f` on a pool thread and awaits its result (`None` if it panicked).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        if let Err(job) = self.send(job) {
            tokio::task::block_in_place(job);
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_at_a_lower_priority_and_survive_a_panic() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let pool = SlowPool::new(2);
        let nice = rt.block_on(pool.run(|| rustix::process::getpriority_process(None).ok()));
        assert_eq!(nice, Some(Some(NICE)));
        assert_eq!(rt.block_on(pool.run(|| -> u8 { panic!("a bug") })), None);
        for i in 0..10 {
            assert_eq!(rt.block_on(pool.run(move || i * 2)), Some(i * 2));
        }
    }
}
