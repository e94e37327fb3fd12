//! The soak: N parents converged, then the engine left alone for a while with a resync of
//! every parent every `--resync-seconds`, its resident memory sampled throughout. In steady
//! state memory must not rise (a leak shows as a slope) and nothing is written.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kube::Client;

use crate::engine::EngineProcess;
use crate::fanout::{Bench, COUNTED, Convergence, apply_controller, set_resync_period};
use crate::plot::{Chart, Style};
use crate::report::Report;
use crate::requests::{apiserver_writes, difference};

/// How often the memory is read.
const SAMPLE: Duration = Duration::from_secs(10);

/// What to run.
pub struct Options {
    pub parents: usize,
    pub minutes: u64,
    pub resync_seconds: u32,
    pub workers: usize,
}

pub async fn run(client: &Client, kubeconfig: &Path, bosun: &Path, docs: &Path, options: &Options) -> anyhow::Result<Report> {
    let Options { parents, minutes, resync_seconds, workers } = *options;
    let mut report = Report::new(format!(
        "Soak: {parents} parents × 3 children, a resync every {resync_seconds} s for {minutes} min, --workers {workers} (bosun)"
    ));
    let bench = Bench::set_up(client, parents).await?;
    let args = [format!("--workers={workers}"), "--configmapsync=false".to_owned()];
    let engine = EngineProcess::start(bosun, kubeconfig, &args).await?;
    let convergence = Convergence::start(client, "engine", "bench").await;
    let started = apply_controller(client, &bench.hook_url).await?;
    let fan_out = convergence.until("1", parents).await - started;
    drop(convergence);
    eprintln!("fan-out: {:.2} s; soaking for {minutes} min …", fan_out.as_secs_f64());
    report.figure("fan-out: CompositeController created → all children and statuses", format!("{:.2} s", fan_out.as_secs_f64()));
    report.figure("peak RSS during the fan-out", format!("{:.1} MiB", engine.peak_rss_mib()));

    set_resync_period(client, resync_seconds).await?;
    let writes_before = apiserver_writes(client, &COUNTED).await?;
    let (calls_before, cpu_before) = (bench.calls.load(Ordering::Relaxed), engine.cpu_seconds());
    let soak = Instant::now();
    let length = Duration::from_secs(minutes * 60);
    let mut samples: Vec<(f64, f64)> = Vec::new();
    loop {
        samples.push((soak.elapsed().as_secs_f64() / 60.0, engine.rss_mib()));
        if soak.elapsed() >= length {
            break;
        }
        if samples.len().is_multiple_of(30) {
            eprintln!("  {:.0} of {minutes} min: RSS {:.1} MiB", soak.elapsed().as_secs_f64() / 60.0, engine.rss_mib());
        }
        tokio::time::sleep(SAMPLE).await;
    }
    let writes = difference(&apiserver_writes(client, &COUNTED).await?, &writes_before);
    let hook_calls = bench.calls.load(Ordering::Relaxed) - calls_before;
    let cpu = engine.cpu_seconds() - cpu_before;

    let rss: Vec<f64> = samples.iter().map(|(_, rss)| *rss).collect();
    let (lowest, highest) = rss.iter().fold((f64::MAX, 0.0_f64), |(low, high), value| (low.min(*value), high.max(*value)));
    // The trend after the first resyncs have grown the caches and buffers to their size.
    let later = &samples[samples.len() / 3..];
    let resyncs = (minutes * 60) as f64 / f64::from(resync_seconds);
    report.figure("RSS at the start of the soak → at its end", format!("{:.1} → {:.1} MiB", rss[0], rss[rss.len() - 1]));
    report.figure("RSS lowest / highest during the soak", format!("{lowest:.1} / {highest:.1} MiB"));
    report.figure("RSS trend over the last two thirds (least squares)", format!("{:+.1} MiB per hour", 60.0 * slope(later)));
    report.figure(
        "hook calls during the soak (per parent per resync period)",
        format!("{hook_calls} ({:.2})", hook_calls as f64 / parents as f64 / resyncs),
    );
    report.figure("writes during the soak (API server; target none)", writes);
    report.figure("CPU during the soak", format!("{cpu:.1} s ({:.2} s per resync of every parent)", cpu / resyncs));
    let chart = Chart::new(
        format!("Soak: resident memory, {parents} parents, a resync every {resync_seconds} s"),
        "time since the soak started (min)",
        "RSS (MiB)",
    )
    .line("bosun RSS", samples, Style::Line);
    report.plot(docs, &format!("soak-{parents}"), &chart);
    Ok(report)
}

/// The least-squares slope of `points` (y per x).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mean_x, mean_y) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let covariance: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    if variance == 0.0 { 0.0 } else { covariance / variance }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slope_is_the_least_squares_fit() {
        assert_eq!(super::slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), 2.0);
        assert_eq!(super::slope(&[(0.0, 4.0), (1.0, 4.0)]), 0.0);
    }
}
