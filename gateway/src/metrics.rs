//! Process-wide gauges and counters, rendered at `GET /metrics` in Prometheus text format.
//!
//! Gauges are moved by RAII guards ([`GaugeGuard`]) held by the task or
//! socket they count, so a task that ends by any path (hangup, error, panic
//! unwinding) also lowers its gauge: a gauge that does not return to zero is
//! a leak.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// The gateway's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Calls whose media task is running.
    pub active_calls: AtomicI64,
    /// UDP media sockets currently bound.
    pub media_sockets: AtomicI64,
    /// Open client WebSocket sessions.
    pub ws_sessions: AtomicI64,
    /// Calls started since the process began.
    pub calls_total: AtomicU64,
}

/// Which gauge a [`GaugeGuard`] holds up.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// [`Metrics::active_calls`].
    ActiveCalls,
    /// [`Metrics::media_sockets`].
    MediaSockets,
    /// [`Metrics::ws_sessions`].
    WsSessions,
}

/// Raises a gauge while alive and lowers it on drop.
#[derive(Debug)]
#[must_use = "the gauge drops back as soon as the guard is dropped"]
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    gauge: Gauge,
}

impl Metrics {
    fn gauge(&self, gauge: Gauge) -> &AtomicI64 {
        match gauge {
            Gauge::ActiveCalls => &self.active_calls,
            Gauge::MediaSockets => &self.media_sockets,
            Gauge::WsSessions => &self.ws_sessions,
        }
    }

    /// Raises `gauge` until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, gauge: Gauge) -> GaugeGuard {
        self.gauge(gauge).fetch_add(1, Ordering::Relaxed);
        if matches!(gauge, Gauge::ActiveCalls) {
            self.calls_total.fetch_add(1, Ordering::Relaxed);
        }
        GaugeGuard {
            metrics: Arc::clone(self),
            gauge,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "namecall_active_calls",
                "Calls with a running media task.",
                self.active_calls.load(Ordering::Relaxed),
            ),
            (
                "namecall_media_sockets",
                "Bound UDP media sockets.",
                self.media_sockets.load(Ordering::Relaxed),
            ),
            (
                "namecall_ws_sessions",
                "Open client WebSocket sessions.",
                self.ws_sessions.load(Ordering::Relaxed),
            ),
            (
                "namecall_tasks",
                "Alive tokio tasks (a count that keeps growing is a leak).",
                tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_alive_tasks() as i64)
                    .unwrap_or(-1),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let total = self.calls_total.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP namecall_calls_total Calls started.\n# TYPE namecall_calls_total counter\nnamecall_calls_total {total}"
        );
        out
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.metrics
            .gauge(self.gauge)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard raises its gauge and lowers it again on drop.
    #[test]
    fn guards_move_gauges() {
        let m = Arc::new(Metrics::default());
        let g = m.hold(Gauge::ActiveCalls);
        let s = m.hold(Gauge::MediaSockets);
        assert!(m.render().contains("namecall_active_calls 1\n"));
        assert!(m.render().contains("namecall_media_sockets 1\n"));
        drop((g, s));
        assert!(m.render().contains("namecall_active_calls 0\n"));
        assert!(m.render().contains("namecall_media_sockets 0\n"));
        assert!(m.render().contains("namecall_calls_total 1\n"));
    }
}
