//! Prometheus metrics, on an optional loopback address: requests and their latency
//! per partition, request and mechanism; errors by code; sessions, partitions and
//! the tamper state. Labels never carry contents (no labels of keys, no PINs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ihsm_proto::{Reply, WireError};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Starts the exporter (inside the tokio runtime).
///
/// # Errors
/// When the address cannot be bound.
pub(crate) fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot start the metrics endpoint on {addr}: {e}"))
}

/// Records one request.
pub(crate) fn record(
    endpoint: &Arc<str>,
    request: &'static str,
    mechanism: Option<u64>,
    result: &Result<Reply, WireError>,
    took: Duration,
) {
    let outcome = match result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e
            .kind()
            .map_or_else(|| format!("0x{:04x}", e.code), |k| k.name().to_owned()),
    };
    let mech = mechanism.map_or_else(|| "none".to_owned(), |m| format!("0x{m:x}"));
    let endpoint = endpoint.to_string();
    metrics::counter!(
        "ihsm_requests_total",
        "endpoint" => endpoint.clone(),
        "request" => request,
        "mechanism" => mech.clone(),
        "result" => outcome
    )
    .increment(1);
    metrics::histogram!(
        "ihsm_request_duration_seconds",
        "endpoint" => endpoint,
        "request" => request,
        "mechanism" => mech
    )
    .record(took.as_secs_f64());
}

/// Device-wide gauges, refreshed by the sensor loop.
pub(crate) fn gauges(tampered: bool, partitions: &[ihsm_core::partition::PartitionInfo]) {
    metrics::gauge!("ihsm_device_tampered").set(if tampered { 1.0 } else { 0.0 });
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!("ihsm_partitions").set(partitions.len() as f64);
        for p in partitions {
            metrics::gauge!("ihsm_sessions", "endpoint" => p.name.clone()).set(p.sessions as f64);
            metrics::gauge!("ihsm_token_objects", "endpoint" => p.name.clone())
                .set(p.token_objects as f64);
        }
    }
}
