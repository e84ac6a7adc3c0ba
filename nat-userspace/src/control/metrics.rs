//! Prometheus endpoint: `GET /metrics` in the text exposition format (prometheus-client),
//! served by hyper on the configured address (loopback by default; "" disables it). Each
//! scrape reads the counters once through [`super::report`].

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

use super::{daemon::Daemon, report};

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

/// Serves `/metrics` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, daemon: Arc<Daemon>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let d = Arc::clone(&daemon);
        tokio::spawn(async move {
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
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        });
    }
}
