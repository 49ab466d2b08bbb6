//! What the harness prints, writes as JSON and draws.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde::Serialize;

use crate::measure::{Summary, median_ratio};
use crate::workload::Workload;
use crate::{Error, Result};

/// The machine the figures were measured on.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
}

impl Machine {
    #[must_use]
    pub fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split(':').nth(1))
            })
            .map_or_else(|| "unknown".into(), |s| s.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_owned());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            kernel,
        }
    }
}

/// A ratio of two targets' throughput, run by run.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Ratio {
    pub a: String,
    pub b: String,
    /// The median over runs of ops/s of A over ops/s of B in the same run.
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// One workload at one thread count.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Row {
    pub workload: String,
    pub threads: usize,
    pub bytes_per_op: Option<usize>,
    pub targets: Vec<Summary>,
    /// The first target against each other one.
    pub ratios: Vec<Ratio>,
}

impl Row {
    #[must_use]
    pub fn new(w: Workload, threads: usize, targets: Vec<Summary>) -> Self {
        Self::named(w.to_string(), threads, w.bytes(), targets)
    }

    /// A row of something that is not a [`Workload`] (`--tls`'s handshakes).
    #[must_use]
    pub fn named(
        workload: String,
        threads: usize,
        bytes_per_op: Option<usize>,
        targets: Vec<Summary>,
    ) -> Self {
        let mut ratios = Vec::new();
        if let Some((first, rest)) = targets.split_first() {
            for other in rest {
                let per_run: Vec<f64> = first
                    .runs
                    .iter()
                    .zip(&other.runs)
                    .map(|(a, b)| a / b)
                    .collect();
                ratios.push(Ratio {
                    a: first.target.clone(),
                    b: other.target.clone(),
                    median: median_ratio(&first.runs, &other.runs),
                    min: per_run.iter().copied().fold(f64::INFINITY, f64::min),
                    max: per_run.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                });
            }
        }
        Self {
            workload,
            threads,
            bytes_per_op,
            targets,
            ratios,
        }
    }

    /// Prints the row as soon as it is measured.
    pub fn print_progress(&self) {
        let plural = if self.threads == 1 { "" } else { "s" };
        println!("\n{}, {} thread{plural}", self.workload, self.threads);
        let bytes = self.bytes_per_op.is_some();
        println!(
            "  {:<16} {:>12} {:>10} {:>10} {:>10}{}",
            "target",
            "ops/s",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
            if bytes { "       MB/s" } else { "" }
        );
        for t in &self.targets {
            let mbs = self
                .bytes_per_op
                .map(|b| format!(" {:>10.1}", t.ops_per_sec * b as f64 / 1e6))
                .unwrap_or_default();
            println!(
                "  {:<16} {:>12.1} {:>10.1} {:>10.1} {:>10.1}{mbs}",
                t.target, t.ops_per_sec, t.p50_us, t.p99_us, t.p999_us
            );
        }
        for r in &self.ratios {
            println!(
                "  {} / {}: {:.2}x (median of {} runs side by side; {:.2}–{:.2})",
                r.a,
                r.b,
                r.median,
                self.targets.first().map_or(0, |t| t.runs.len()),
                r.min,
                r.max
            );
        }
    }
}

/// A workload a target cannot do, and why.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Skip {
    pub workload: String,
    pub target: String,
    pub why: String,
}

/// Everything one invocation measured.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub duration_secs: f64,
    pub runs: usize,
    pub rows: Vec<Row>,
    pub skipped: Vec<Skip>,
}

impl Report {
    #[must_use]
    pub fn new(duration: Duration, runs: usize) -> Self {
        Self {
            machine: Machine::this(),
            duration_secs: duration.as_secs_f64(),
            runs,
            rows: Vec::new(),
            skipped: Vec::new(),
        }
    }

    pub fn skipped(&mut self, w: Workload, target: &str, why: &str) {
        eprintln!("{w}: skipping {target}: {why}");
        self.skipped.push(Skip {
            workload: w.to_string(),
            target: target.to_owned(),
            why: why.to_owned(),
        });
    }

    /// The closing summary: the machine and every ratio on one line each.
    pub fn print(&self) {
        println!(
            "\n{} ({} cores, Linux {}); {} s per target and thread count in {} interleaved runs",
            self.machine.cpu,
            self.machine.cores,
            self.machine.kernel,
            self.duration_secs,
            self.runs
        );
        for row in &self.rows {
            for r in &row.ratios {
                println!(
                    "  {:<22} x{:<2} {:>10} / {:<14} {:>8.2}x",
                    row.workload, row.threads, r.a, r.b, r.median
                );
            }
        }
    }
}

/// Writes `value` as pretty JSON, and says so.
///
/// # Errors
/// When the file cannot be written.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Raw(e.to_string()))?;
    std::fs::write(path, bytes)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::Setup(format!("drawing the chart: {e:?}"))
}

/// Horizontal bars of ops/s (logarithmic) per workload and thread count, one per
/// target, the workloads top to bottom in the order measured.
///
/// # Errors
/// When the file cannot be written.
pub fn plot(report: &Report, path: &Path) -> Result<()> {
    let mut names: Vec<&str> = Vec::new();
    for row in &report.rows {
        for t in &row.targets {
            if !names.contains(&t.target.as_str()) {
                names.push(&t.target);
            }
        }
    }
    let groups = report.rows.len().max(1);
    let max = report
        .rows
        .iter()
        .flat_map(|r| r.targets.iter().map(|t| t.ops_per_sec))
        .fold(10.0, f64::max);
    // One slot per target and one of space per group, bottom to top.
    let per = i32::try_from(names.len() + 1).unwrap_or(i32::MAX);
    let slots = i32::try_from(groups)
        .unwrap_or(i32::MAX)
        .saturating_mul(per);
    let height = u32::try_from(130 + slots * 11).unwrap_or(8000);
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let labels: Vec<String> = report
        .rows
        .iter()
        .map(|r| format!("{} x{}", r.workload, r.threads))
        .collect();
    // The group drawn at the top is the first measured.
    let group_of = |slot: i32| usize::try_from((slots - 1 - slot) / per).ok();
    let mut chart = ChartBuilder::on(&root)
        .caption("operations per second (log scale)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        .build_cartesian_2d((1f64..max * 3.0).log_scale(), 0i32..slots)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(usize::try_from(slots).unwrap_or(0) + 1)
        .y_label_formatter(&|y| {
            // The label sits beside the middle of its group.
            let from_top = slots - 1 - *y;
            if from_top.rem_euclid(per) == per / 2 {
                group_of(*y)
                    .and_then(|g| labels.get(g).cloned())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_style(("sans-serif", 13))
        .x_label_style(("sans-serif", 13))
        .x_desc("ops/s")
        .draw()
        .map_err(draw_err)?;
    for (k, name) in names.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let k = i32::try_from(k).unwrap_or(0);
        let bars = report.rows.iter().enumerate().filter_map(|(g, row)| {
            let t = row.targets.iter().find(|t| t.target == *name)?;
            let g = i32::try_from(g).ok()?;
            // Slots of group g from the top: g*per .. g*per+names; slot 0 on top.
            let top = slots - g * per - k;
            Some(Rectangle::new(
                [(1.0, top), (t.ops_per_sec.max(1.0), top - 1)],
                colour.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(draw_err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}

/// Latency distributions (percentile against microseconds, log scale), one line
/// per way of reaching the HSM.
///
/// # Errors
/// When the file cannot be written.
pub fn plot_latency(series: &[(String, Vec<u64>)], path: &Path) -> Result<()> {
    let max_us = series
        .iter()
        .filter_map(|(_, v)| v.last())
        .fold(10.0, |m, &ns| f64::max(m, ns as f64 / 1000.0));
    let min_us = series
        .iter()
        .filter_map(|(_, v)| v.first())
        .fold(max_us, |m, &ns| f64::min(m, (ns as f64 / 1000.0).max(0.1)));
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "signing latency: host HSM vs central HSM",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((min_us * 0.8..max_us * 1.2).log_scale(), 0f64..100f64)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc("latency, µs (log scale)")
        .y_desc("percentile")
        .draw()
        .map_err(draw_err)?;
    for (k, (name, sorted)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let n = sorted.len().max(1);
        let step = (n / 2000).max(1);
        let points = sorted
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(i, &ns)| (ns as f64 / 1000.0, 100.0 * i as f64 / n as f64));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(draw_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(draw_err)?;
    root.present().map_err(draw_err)?;
    Ok(())
}
