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
    /// The PBX legs of ended calls, summed ([`Metrics::record_call_media`]).
    pub pbx_media: PbxMedia,
}

/// Counters of the PBX (RTP) legs of ended calls: what a Prometheus alert on call
/// quality needs (loss rate, average MOS, bad packets).
#[derive(Debug, Default)]
pub struct PbxMedia {
    /// RTP packets sent to PBXs.
    pub packets_sent: AtomicU64,
    /// RTP packets received from PBXs.
    pub packets_received: AtomicU64,
    /// RTP packets from PBXs that never arrived (RFC 3550 cumulative loss).
    pub packets_lost: AtomicU64,
    /// Datagrams dropped: malformed, unknown payload type, or from an unexpected source.
    pub packets_dropped: AtomicU64,
    /// Sum of the calls' estimated MOS, in thousandths (with `calls`, the average).
    pub mos_milli_sum: AtomicU64,
    /// Calls whose PBX leg was counted.
    pub calls: AtomicU64,
    /// Calls whose estimated MOS was below 3.6 (what users call a bad line).
    pub poor_calls: AtomicU64,
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

    /// Adds an ended call's PBX leg to [`Metrics::pbx_media`].
    pub fn record_call_media(&self, s: &media::bridge::BridgeStats) {
        let m = &self.pbx_media;
        m.packets_sent
            .fetch_add(s.rtp.packets_sent, Ordering::Relaxed);
        m.packets_received
            .fetch_add(s.rtp.packets_received, Ordering::Relaxed);
        m.packets_lost
            .fetch_add(s.rtp.lost.max(0) as u64, Ordering::Relaxed);
        m.packets_dropped.fetch_add(
            s.rtp.malformed + s.rtp.unknown_pt + s.rtp.unexpected_source,
            Ordering::Relaxed,
        );
        m.mos_milli_sum
            .fetch_add((s.mos * 1000.0).round() as u64, Ordering::Relaxed);
        m.calls.fetch_add(1, Ordering::Relaxed);
        if s.mos < 3.6 {
            m.poor_calls.fetch_add(1, Ordering::Relaxed);
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
        let m = &self.pbx_media;
        let counters = [
            (
                "namecall_pbx_rtp_packets_sent_total",
                "RTP packets sent to PBXs (ended calls).",
                &m.packets_sent,
            ),
            (
                "namecall_pbx_rtp_packets_received_total",
                "RTP packets received from PBXs (ended calls).",
                &m.packets_received,
            ),
            (
                "namecall_pbx_rtp_packets_lost_total",
                "RTP packets from PBXs that never arrived (ended calls).",
                &m.packets_lost,
            ),
            (
                "namecall_pbx_rtp_packets_dropped_total",
                "Datagrams on PBX legs dropped: malformed, unknown payload type, unexpected source.",
                &m.packets_dropped,
            ),
            (
                "namecall_poor_calls_total",
                "Ended calls whose PBX leg's estimated MOS was below 3.6.",
                &m.poor_calls,
            ),
        ];
        for (name, help, value) in counters {
            let v = value.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let (sum, count) = (
            m.mos_milli_sum.load(Ordering::Relaxed) as f64 / 1000.0,
            m.calls.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP namecall_call_mos Estimated MOS (ITU-T G.107 E-model) of ended calls' PBX legs.\n\
             # TYPE namecall_call_mos summary\nnamecall_call_mos_sum {sum}\nnamecall_call_mos_count {count}"
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

    /// An ended call's PBX leg shows in the counters and the MOS summary; a poor one
    /// is counted as such.
    #[test]
    fn call_media_is_summed() {
        let m = Metrics::default();
        let mut s = media::bridge::BridgeStats::default();
        s.rtp.packets_sent = 300;
        s.rtp.packets_received = 290;
        s.rtp.lost = 10;
        s.rtp.malformed = 2;
        s.mos = 4.25;
        m.record_call_media(&s);
        s.mos = 2.5;
        m.record_call_media(&s);
        let text = m.render();
        for line in [
            "namecall_pbx_rtp_packets_sent_total 600\n",
            "namecall_pbx_rtp_packets_received_total 580\n",
            "namecall_pbx_rtp_packets_lost_total 20\n",
            "namecall_pbx_rtp_packets_dropped_total 4\n",
            "namecall_poor_calls_total 1\n",
            "namecall_call_mos_sum 6.75\n",
            "namecall_call_mos_count 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
