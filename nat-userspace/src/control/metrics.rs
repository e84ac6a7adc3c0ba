//! Prometheus endpoint: `GET /metrics` in the text exposition format (prometheus-client),
//! served by hyper on the configured address (loopback by default; "" disables it). Each
//! scrape reads the counters once through [`super::report`]. At most [`MAX_CONNECTIONS`]
//! connections at once, each closed when idle for [`HEADER_TIMEOUT`] and after
//! [`CONNECTION_LIFETIME`] in any case.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

use super::{
    daemon::Daemon,
    limits::{accept_error, Throttled},
    report,
};

#[derive(Debug)]
struct SipnatCollector(Arc<DaemonRef>);

/// `Daemon` is not `Debug`; the collector only needs a handle.
struct DaemonRef(Arc<Daemon>);

impl std::fmt::Debug for DaemonRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Daemon")
    }
}

impl Collector for SipnatCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        report::collect(&self.0 .0).encode(&mut encoder)
    }
}

/// The text exposition of all metrics.
pub fn render(daemon: &Arc<Daemon>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SipnatCollector(Arc::new(DaemonRef(Arc::clone(
        daemon,
    ))))));
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
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
