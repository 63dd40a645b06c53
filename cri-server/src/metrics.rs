//! Optional Prometheus metrics: per-RPC counts and latency histograms, gathered by
//! a tower layer around the gRPC services and served as text on
//! `metrics_address` (`GET /metrics`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    by_method: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    fn record(&self, method: &str, took: Duration) {
        let secs = took.as_secs_f64();
        let mut map = self.by_method.lock().unwrap_or_else(|e| e.into_inner());
        let h = map.entry(method.to_string()).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let map = self.by_method.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = String::from(
            "# HELP berth_cri_requests_total CRI calls served, by method.\n# TYPE berth_cri_requests_total counter\n",
        );
        for (m, h) in map.iter() {
            s.push_str(&format!(
                "berth_cri_requests_total{{method=\"{m}\"}} {}\n",
                h.count
            ));
        }
        s.push_str("# HELP berth_cri_request_duration_seconds CRI call latency, by method.\n# TYPE berth_cri_request_duration_seconds histogram\n");
        for (m, h) in map.iter() {
            for (i, le) in BUCKETS.iter().enumerate() {
                s.push_str(&format!(
                    "berth_cri_request_duration_seconds_bucket{{method=\"{m}\",le=\"{le}\"}} {}\n",
                    h.counts[i]
                ));
            }
            s.push_str(&format!(
                "berth_cri_request_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            s.push_str(&format!(
                "berth_cri_request_duration_seconds_sum{{method=\"{m}\"}} {}\n",
                h.sum
            ));
            s.push_str(&format!(
                "berth_cri_request_duration_seconds_count{{method=\"{m}\"}} {}\n",
                h.count
            ));
        }
        s
    }
}

#[derive(Clone)]
pub struct Layer(pub Arc<Metrics>);

impl<S> tower::Layer<S> for Layer {
    type Service = Service<S>;
    fn layer(&self, inner: S) -> Service<S> {
        Service {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Service<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for Service<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // "/runtime.v1.RuntimeService/RunPodSandbox" → "RunPodSandbox"
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let start = Instant::now();
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = fut.await;
            metrics.record(&method, start.elapsed());
            r
        })
    }
}

/// Serves `GET /metrics` on `addr` until the process ends.
pub async fn serve(addr: String, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(address = %addr, "metrics on /metrics");
    loop {
        let (mut conn, _) = listener.accept().await?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics ") {
                ("200 OK", metrics.render())
            } else {
                (
                    "404 Not Found",
                    "only /metrics is served here\n".to_string(),
                )
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::default();
        m.record("Version", Duration::from_micros(500));
        m.record("Version", Duration::from_millis(30));
        let text = m.render();
        assert!(text.contains("berth_cri_requests_total{method=\"Version\"} 2"));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}
