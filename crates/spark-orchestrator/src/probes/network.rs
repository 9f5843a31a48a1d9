//! Network probe: active round trips to the configured upstreams, plus the passive outbound
//! latency the runtime feeds in ([`super::outbound`]).
//!
//! The decision worth knowing: a failure or a timeout is never a latency. It counts in
//! `consecutive_failures`, clears `last_rtt_ms` and leaves the EWMA as it was, so an upstream
//! that is down cannot pass for one that is fast (connection refused returns in microseconds).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::health::{Fault, HealthLog, ProbeHealth};
use super::outbound::{OutboundLatency, OutboundProbe, OutboundReading};
use super::upstream::{Target, Upstream};

/// Weight of the newest value in every EWMA the probes keep.
pub const EWMA_ALPHA: f64 = 0.3;
/// Most bytes read while waiting for an HTTP status line.
const MAX_STATUS_LINE: usize = 1024;

/// Why one active measurement produced no round trip.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// No round trip within the probe timeout (the limit given).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP connect failed (name not resolved, refused, unreachable).
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    /// Writing the `HEAD` request or reading the status line failed.
    #[error("request failed")]
    Io(#[source] std::io::Error),
    /// What was wrong with the answer (not an HTTP/1.x status line, ...).
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The measuring task panicked or was cancelled.
    #[error("probe task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// One upstream as of the latest sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamReading {
    /// The upstream as written in the config.
    pub name: String,
    /// Round trip of the latest measurement; `None` if it failed.
    pub last_rtt_ms: Option<f64>,
    /// Smoothed round trip over successful measurements.
    pub ewma_ms: Option<f64>,
    /// Failed measurements in a row (0 after a success).
    pub consecutive_failures: u32,
    /// HTTP status of the latest successful `HEAD` (any status counts as an answer).
    pub last_status: Option<u16>,
    /// Why the latest measurement failed, if it did.
    pub last_error: Option<String>,
}

/// The network probe's part of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkReading {
    /// Each configured upstream, in config order.
    pub upstreams: Vec<UpstreamReading>,
    /// Latency of guests' outbound requests since the previous sample.
    pub outbound: OutboundReading,
    /// Degraded while any upstream's latest measurement failed.
    pub health: ProbeHealth,
}

/// Measures the upstreams and drains the outbound window.
#[derive(Debug)]
pub struct NetworkProbe {
    upstreams: Vec<(Upstream, UpstreamReading)>,
    timeout: Duration,
    outbound: OutboundProbe,
    log: HealthLog,
}

impl NetworkProbe {
    /// A probe of `upstreams`, each measurement limited to `timeout`; nothing measured yet.
    pub fn new(upstreams: Vec<Upstream>, timeout: Duration) -> NetworkProbe {
        let upstreams = upstreams
            .into_iter()
            .map(|u| {
                let reading = UpstreamReading {
                    name: u.name.clone(),
                    ..Default::default()
                };
                (u, reading)
            })
            .collect();
        NetworkProbe {
            upstreams,
            timeout,
            outbound: OutboundProbe::default(),
            log: HealthLog::new("network"),
        }
    }

    /// The handle the runtime records observed outbound latencies into.
    pub fn outbound(&self) -> OutboundLatency {
        self.outbound.handle()
    }

    /// Measures every upstream concurrently when `active`; takes at most about the probe
    /// timeout. Without `active` the upstreams keep their last readings (active probes cost
    /// the upstream a request, so they run less often than the control loop ticks) and only
    /// the passive outbound window is read.
    pub async fn sample(&mut self, active: bool) -> NetworkReading {
        if !active {
            return NetworkReading {
                upstreams: self.upstreams.iter().map(|(_, r)| r.clone()).collect(),
                outbound: self.outbound.sample(),
                health: self.log.current(),
            };
        }
        let timeout = self.timeout;
        let tasks: Vec<_> = self
            .upstreams
            .iter()
            .map(|(u, _)| {
                let target = u.target.clone();
                tokio::spawn(async move { measure(&target, timeout).await })
            })
            .collect();
        let mut faults = Vec::new();
        for ((_, reading), task) in self.upstreams.iter_mut().zip(tasks) {
            let result = task.await.unwrap_or_else(|e| Err(MeasureError::Task(e)));
            if let Err(e) = &result {
                faults.push(Fault::new(
                    reading.name.clone(),
                    spark_error::chain(e).to_string(),
                ));
            }
            update(reading, result);
        }
        NetworkReading {
            upstreams: self.upstreams.iter().map(|(_, r)| r.clone()).collect(),
            outbound: self.outbound.sample(),
            health: self.log.update(&faults),
        }
    }
}

fn update(reading: &mut UpstreamReading, result: Result<(Duration, Option<u16>), MeasureError>) {
    match result {
        Ok((rtt, status)) => {
            let ms = rtt.as_secs_f64() * 1000.0;
            reading.last_rtt_ms = Some(ms);
            reading.ewma_ms = Some(ewma(reading.ewma_ms, ms, EWMA_ALPHA));
            reading.consecutive_failures = 0;
            reading.last_status = status;
            reading.last_error = None;
        }
        Err(e) => {
            reading.last_rtt_ms = None;
            reading.consecutive_failures = reading.consecutive_failures.saturating_add(1);
            reading.last_status = None;
            reading.last_error = Some(spark_error::chain(&e).to_string());
        }
    }
}

/// Folds `value` into an exponentially weighted mean; the first value is taken as is.
pub(super) fn ewma(previous: Option<f64>, value: f64, alpha: f64) -> f64 {
    previous.map_or(value, |p| p + alpha * (value - p))
}

/// One active measurement: the round trip (connect, or connect + `HEAD` until the status
/// line) and the HTTP status when there is one.
pub async fn measure(
    target: &Target,
    timeout: Duration,
) -> Result<(Duration, Option<u16>), MeasureError> {
    let start = Instant::now();
    match tokio::time::timeout(timeout, round_trip(target)).await {
        Ok(Ok(status)) => Ok((start.elapsed(), status)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(MeasureError::Timeout(timeout)),
    }
}

async fn round_trip(target: &Target) -> Result<Option<u16>, MeasureError> {
    match target {
        Target::Tcp { host, port } => {
            TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(MeasureError::Connect)?;
            Ok(None)
        }
        Target::Http {
            host,
            port,
            host_header,
            path,
        } => {
            let mut stream = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(MeasureError::Connect)?;
            // Best effort: without it the small request may wait for Nagle's timer.
            let _ = stream.set_nodelay(true);
            let request = format!(
                "HEAD {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: spark-probe\r\nConnection: close\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(MeasureError::Io)?;
            read_status(&mut stream).await.map(Some)
        }
    }
}

/// Reads until the end of the status line and returns the status code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, MeasureError> {
    let mut buffer = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buffer.contains(&b'\n') {
        if buffer.len() >= MAX_STATUS_LINE {
            return Err(MeasureError::BadResponse(
                "no status line in the first 1024 bytes".into(),
            ));
        }
        let n = stream.read(&mut chunk).await.map_err(MeasureError::Io)?;
        if n == 0 {
            return Err(MeasureError::BadResponse(
                "connection closed before the status line".into(),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let end = buffer
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(buffer.len());
    parse_status_line(&String::from_utf8_lossy(&buffer[..end]))
}

fn parse_status_line(line: &str) -> Result<u16, MeasureError> {
    let mut words = line.split_whitespace();
    let version = words.next().unwrap_or_default();
    let code = words.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(code) if version.starts_with("HTTP/1.") && (100..=999).contains(&code) => Ok(code),
        _ => Err(MeasureError::BadResponse(format!(
            "not an HTTP/1.x status line: {:?}",
            line.trim_end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content\r").unwrap(), 204);
        assert_eq!(parse_status_line("HTTP/1.0 503").unwrap(), 503);
        assert!(parse_status_line("SSH-2.0-OpenSSH_9.2").is_err());
        assert!(parse_status_line("HTTP/1.1 abc").is_err());
    }

    #[test]
    fn failures_do_not_touch_the_ewma() {
        let mut reading = UpstreamReading::default();
        update(&mut reading, Ok((Duration::from_millis(10), None)));
        update(&mut reading, Ok((Duration::from_millis(20), Some(200))));
        assert!((reading.ewma_ms.unwrap() - 13.0).abs() < 1e-9);
        update(
            &mut reading,
            Err(MeasureError::Timeout(Duration::from_secs(1))),
        );
        update(&mut reading, Err(MeasureError::BadResponse("x".into())));
        assert_eq!(reading.consecutive_failures, 2);
        assert_eq!(reading.last_rtt_ms, None);
        assert!((reading.ewma_ms.unwrap() - 13.0).abs() < 1e-9);
        assert_eq!(reading.last_error.as_deref(), Some("bad response: x"));
    }
}
