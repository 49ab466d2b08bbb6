//! Timing: N threads doing one operation for a while, every latency kept, and
//! the statistics the report prints.

use std::io::IsTerminal;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::{Error, Result};

/// One thread's way of doing the workload's operation.
pub trait Op {
    /// The operation, timed.
    ///
    /// # Errors
    /// Whatever the module or library answered.
    fn once(&mut self) -> Result<()>;

    /// Clears up what `once` made (a generated key, say), outside the timing.
    ///
    /// # Errors
    /// Whatever the module answered.
    fn tidy(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A workload prepared in one target (a module, or the raw library).
pub trait Bench: Sync {
    /// The target's name in the report.
    fn name(&self) -> &str;

    /// A worker for thread `index` (its own session, say); made before the clock
    /// starts.
    ///
    /// # Errors
    /// When the target cannot give one.
    fn worker(&self, index: usize) -> Result<Box<dyn Op + Send + '_>>;

    /// Destroys what preparing made.
    ///
    /// # Errors
    /// When the target refuses.
    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// A progress bar on a terminal; nothing otherwise.
#[must_use]
pub fn bar(len: u64, message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {eta}") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(message.to_owned());
    b
}

/// What one timed run measured.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub ops: u64,
    pub elapsed: Duration,
    /// Every operation's latency, in nanoseconds.
    pub latencies: Vec<u64>,
}

impl Sample {
    #[must_use]
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `bench` on `threads` threads for `duration` (or, with `iterations`, that
/// many operations per thread), all starting together.
///
/// # Errors
/// The first error any worker met.
pub fn run(
    bench: &dyn Bench,
    threads: usize,
    duration: Duration,
    iterations: Option<u64>,
) -> Result<Sample> {
    let workers = (0..threads)
        .map(|i| bench.worker(i))
        .collect::<Result<Vec<_>>>()?;
    let start = Barrier::new(threads + 1);
    let (results, t0) = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut op| {
                let start = &start;
                scope.spawn(move || -> Result<(Vec<u64>, Instant)> {
                    let mut lat = Vec::with_capacity(4096);
                    start.wait();
                    let begun = Instant::now();
                    let end = begun + duration;
                    loop {
                        let t = Instant::now();
                        op.once()?;
                        let done = Instant::now();
                        lat.push(u64::try_from((done - t).as_nanos()).unwrap_or(u64::MAX));
                        op.tidy()?;
                        let enough = match iterations {
                            Some(n) => lat.len() as u64 >= n,
                            None => done >= end,
                        };
                        if enough {
                            return Ok((lat, done));
                        }
                    }
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Pkcs11("a worker panicked".into())))
            })
            .collect();
        (results, t0)
    });
    let mut sample = Sample::default();
    let mut last = t0;
    for r in results {
        let (lat, done) = r?;
        sample.ops += lat.len() as u64;
        sample.latencies.extend(lat);
        last = last.max(done);
    }
    sample.elapsed = last - t0;
    Ok(sample)
}

/// The figures of one target at one thread count, over all its runs.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Summary {
    pub target: String,
    /// Operations per second over all runs together.
    pub ops_per_sec: f64,
    /// Each run's operations per second, in run order.
    pub runs: Vec<f64>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub ops: u64,
}

/// The `q` quantile (0..=1) of sorted nanoseconds, in microseconds.
#[must_use]
pub fn quantile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

impl Summary {
    #[must_use]
    pub fn of(target: &str, samples: &[Sample]) -> Self {
        let mut all: Vec<u64> = samples
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        let ops: u64 = samples.iter().map(|s| s.ops).sum();
        let secs: f64 = samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        Self {
            target: target.to_owned(),
            ops_per_sec: ops as f64 / secs.max(1e-9),
            runs: samples.iter().map(Sample::ops_per_sec).collect(),
            p50_us: quantile_us(&all, 0.50),
            p99_us: quantile_us(&all, 0.99),
            p999_us: quantile_us(&all, 0.999),
            ops,
        }
    }
}

/// The median of `a[i] / b[i]` over runs made side by side.
#[must_use]
pub fn median_ratio(a: &[f64], b: &[f64]) -> f64 {
    let mut r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&mut r)
}

/// The median (NaN for none).
#[must_use]
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let sorted: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert!((quantile_us(&sorted, 0.5) - 501.0).abs() < 1.01);
        assert!((quantile_us(&sorted, 0.99) - 990.0).abs() < 1.01);
        assert_eq!(quantile_us(&sorted, 1.0), 1000.0);
        assert!(quantile_us(&[], 0.5).is_nan());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_ratio(&[2.0, 6.0, 9.0], &[1.0, 2.0, 3.0]), 3.0);
    }

    struct Count(std::sync::atomic::AtomicU64);
    struct CountOp<'a>(&'a std::sync::atomic::AtomicU64);
    impl Op for CountOp<'_> {
        fn once(&mut self) -> Result<()> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }
    impl Bench for Count {
        fn name(&self) -> &str {
            "count"
        }
        fn worker(&self, _: usize) -> Result<Box<dyn Op + Send + '_>> {
            Ok(Box::new(CountOp(&self.0)))
        }
    }

    #[test]
    fn every_operation_is_counted_and_timed() {
        let c = Count(std::sync::atomic::AtomicU64::new(0));
        let s = run(&c, 3, Duration::from_secs(60), Some(1000)).unwrap();
        assert_eq!(s.ops, 3000);
        assert_eq!(s.latencies.len(), 3000);
        assert_eq!(c.0.load(std::sync::atomic::Ordering::Relaxed), 3000);
        let sum = Summary::of("count", &[s.clone(), s]);
        assert_eq!(sum.ops, 6000);
        assert_eq!(sum.runs.len(), 2);
    }
}
