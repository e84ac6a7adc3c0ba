//! Prometheus endpoint: `GET /metrics` in the text exposition format (prometheus-client),
//! served by hyper on the configured address (loopback by default; "" disables it). Each
//! scrape reads the counters once through [`super::report`], plus what only the metrics
//! show ([`Extra`]: worker CPU time and the flow table's capacity). At most
//! [`MAX_CONNECTIONS`] connections at once, each closed when idle for [`HEADER_TIMEOUT`]
//! and after [`CONNECTION_LIFETIME`] in any case.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use super::report::family;
use super::{
    daemon::Daemon,
    limits::{accept_error, Throttled},
    report,
};
use prometheus_client::metrics::MetricType;

/// Metrics beyond the counters of [`report::Report`].
#[derive(Clone, Debug, Default)]
pub struct Extra {
    /// (queue, CPU the worker is pinned to, user + system CPU seconds of its thread).
    pub worker_cpu: Vec<(u32, Option<usize>, f64)>,
    /// Flows the inbound flow table holds at its design load (half its slots).
    pub flow_capacity: u64,
}

impl Extra {
    fn read(d: &Daemon) -> Extra {
        let cpus: Vec<(u32, Option<usize>)> = d
            .workers
            .lock()
            .expect("workers lock")
            .iter()
            .map(|w| (w.queue, w.cpu))
            .collect();
        let times = worker_thread_times();
        Extra {
            worker_cpu: cpus
                .into_iter()
                .map(|(q, cpu)| {
                    let t = times.iter().find(|(tq, _)| *tq == q).map_or(0.0, |t| t.1);
                    (q, cpu, t)
                })
                .collect(),
            flow_capacity: (d.shared.flows.slots() / 2) as u64,
        }
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = family(
                enc,
                "sipnat_queue_cpu_seconds",
                "CPU time (user + system) of the worker thread serving the queue",
                MetricType::Counter,
            )?;
            for (q, cpu, secs) in &self.worker_cpu {
                let labels = [
                    ("queue", q.to_string()),
                    (
                        "cpu",
                        cpu.map_or_else(|| "any".to_string(), |c| c.to_string()),
                    ),
                ];
                ConstCounter::new(*secs).encode(m.encode_family(&labels)?)?;
            }
        }
        let m = family(
            enc,
            "sipnat_flow_table_capacity",
            "Flows the inbound flow table is sized for (half its slots)",
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.flow_capacity as i64).encode(m)?;
        Ok(())
    }
}

/// (queue, CPU seconds) of this process's worker threads (named `sipnat-q<queue>`), from
/// /proc/self/task/*/stat (utime + stime, clock ticks).
fn worker_thread_times() -> Vec<(u32, f64)> {
    // SAFETY: plain sysconf.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.filter_map(Result::ok) {
        let p = e.path();
        let Ok(comm) = std::fs::read_to_string(p.join("comm")) else {
            continue;
        };
        let Some(q) = comm
            .trim()
            .strip_prefix("sipnat-q")
            .and_then(|q| q.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(p.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name start at field 3 (state); utime is field
        // 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        out.push((q, (tick(11) + tick(12)) as f64 / hz));
    }
    out
}

#[derive(Debug)]
struct SipnatCollector(Arc<DaemonRef>);

/// A reading rendered as it was taken (for [`render_report`]).
struct ReportCollector(Arc<(report::Report, Extra)>);

impl std::fmt::Debug for ReportCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReportCollector")
    }
}

impl Collector for ReportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0 .0.encode(&mut encoder)?;
        self.0 .1.encode(&mut encoder)
    }
}

/// `Daemon` is not `Debug`; the collector only needs a handle.
struct DaemonRef(Arc<Daemon>);

impl std::fmt::Debug for DaemonRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Daemon")
    }
}

impl Collector for SipnatCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let d = &self.0 .0;
        report::collect(d).encode(&mut encoder)?;
        Extra::read(d).encode(&mut encoder)
    }
}

/// The text exposition of all metrics.
pub fn render(daemon: &Arc<Daemon>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SipnatCollector(Arc::new(DaemonRef(Arc::clone(
        daemon,
    ))))));
    encode(&registry)
}

/// The text exposition of one reading (what `/metrics` serves for it): the dashboard
/// test checks the Grafana expressions against it without a running daemon.
pub fn render_report(report: report::Report, extra: Extra) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ReportCollector(Arc::new((report, extra)))));
    encode(&registry)
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// Binds `addr` (errors name the address).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for metrics on {addr}: {e} (set [control] metrics, or \"\" to disable)"
        )
    })
}

/// Most metrics connections served at once. A connection beyond it is closed as soon as
/// it is accepted (a scraper retries at its next interval), so no number of clients can
/// exhaust the daemon's file descriptors through this port.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request head, on a new connection and between
/// requests on a kept-alive one; then the connection is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection lives, whatever it does.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Serves `/metrics` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, daemon: Arc<Daemon>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused = Throttled::default();
    let mut errors = Throttled::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                accept_error("metrics", &e, &mut errors).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            if let Some(n) = refused.hit() {
                tracing::warn!(
                    "metrics: {MAX_CONNECTIONS} connections open (the limit); closing new ones \
                     ({n} closed since the last message); idle ones are closed after {} s",
                    HEADER_TIMEOUT.as_secs()
                );
            }
            continue;
        };
        let d = Arc::clone(&daemon);
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let d = Arc::clone(&d);
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header(
                                "content-type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .body(Full::new(Bytes::from(render(&d))))
                    } else {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from("see /metrics\n")))
                    };
                    resp.map_err(|e| std::io::Error::other(e.to_string()))
                }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}
