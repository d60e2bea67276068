//! dnsmasq as the DNS server of the RFC 3263 tests: a third-party resolver
//! serving NAPTR, SRV and A records for test domains on a free loopback port.
//!
//! [`Dnsmasq::start`] runs Debian's `dnsmasq` (package `dnsmasq-base`) in
//! the foreground with no configuration file, no `/etc/hosts`, no upstream
//! servers and `--local` for every top-level domain of the zone, so names it
//! has no records for get NXDOMAIN rather than a forwarded query. It returns
//! once a real DNS query over UDP is answered, never after a fixed sleep.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::{Log, free_port, kill, spawn_logged};

/// The name the readiness probe asks for (its queries are not counted).
const PROBE: &str = "labkit-ready.probe";

/// The records a [`Dnsmasq`] serves, built up with [`DnsZone::naptr`],
/// [`DnsZone::srv`] and [`DnsZone::a`].
#[derive(Clone, Debug, Default)]
pub struct DnsZone {
    args: Vec<String>,
    tlds: Vec<String>,
}

impl DnsZone {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    fn name(&mut self, name: &str) -> String {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(tld) = name.rsplit('.').next()
            && !tld.is_empty()
            && !tld.starts_with('_')
            && !self.tlds.iter().any(|t| t == tld)
        {
            self.tlds.push(tld.to_owned());
        }
        name
    }

    /// A NAPTR record (RFC 3403) of `name` with an empty regexp, such as
    /// `naptr("example.test", 10, 10, "S", "SIP+D2T", "_sip._tcp.example.test")`.
    pub fn naptr(
        mut self,
        name: &str,
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        replacement: &str,
    ) -> Self {
        let name = self.name(name);
        let replacement = replacement.trim_end_matches('.');
        self.args.push(format!(
            "--naptr-record={name},{order},{preference},{flags},{services},,{replacement}"
        ));
        self
    }

    /// An SRV record (RFC 2782) such as `srv("_sip._udp.example.test",
    /// "sip1.example.test", 5060, 10, 0)`.
    pub fn srv(mut self, name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Self {
        let name = self.name(name);
        let target = target.trim_end_matches('.');
        self.args.push(format!(
            "--srv-host={name},{target},{port},{priority},{weight}"
        ));
        self
    }

    /// An A record.
    pub fn a(mut self, name: &str, addr: Ipv4Addr) -> Self {
        let name = self.name(name);
        self.args.push(format!("--host-record={name},{addr}"));
        self
    }
}

/// A running dnsmasq answering [`DnsZone`]'s records on 127.0.0.1 (UDP and
/// TCP). Killed on drop.
pub struct Dnsmasq {
    child: Option<Child>,
    port: u16,
    /// dnsmasq's log (`--log-queries`: one `query[TYPE] name from ...` line per question).
    pub log: Log,
}

/// `dnsmasq` on PATH, or in `/usr/sbin` (where Debian puts it, often not on
/// an unprivileged user's PATH).
fn dnsmasq_bin() -> io::Result<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("dnsmasq"))
            .find(|p| p.is_file())
    });
    let sbin = std::path::PathBuf::from("/usr/sbin/dnsmasq");
    on_path
        .or_else(|| sbin.is_file().then_some(sbin))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "`dnsmasq` not found: install Debian package `dnsmasq-base` (scripts/install-deps.sh)",
            )
        })
}

impl Dnsmasq {
    /// Starts dnsmasq on a free port serving `zone`, and waits until it
    /// answers a query.
    pub fn start(zone: &DnsZone) -> io::Result<Dnsmasq> {
        let bin = dnsmasq_bin()?;
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            "--conf-file=/dev/null",
            "--log-queries",
            "--log-facility=-",
        ]);
        cmd.arg(format!("--port={port}"));
        let mut tlds = zone.tlds.clone();
        tlds.push(PROBE.rsplit('.').next().unwrap_or("probe").to_owned());
        for tld in &tlds {
            cmd.arg(format!("--local=/{tld}/"));
        }
        cmd.args(&zone.args);
        let log = Log::default();
        let child = spawn_logged(cmd, &log)?;
        let mut d = Dnsmasq {
            child: Some(child),
            port,
            log,
        };
        d.wait_ready()?;
        Ok(d)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        let end = Instant::now() + Duration::from_secs(20);
        let mut id: u16 = 0x1ab0;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Err(io::Error::other(format!(
                    "dnsmasq exited ({st}):\n{}",
                    self.log.tail(30)
                )));
            }
            if Instant::now() >= end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "dnsmasq answered no query within 20 s:\n{}",
                        self.log.tail(30)
                    ),
                ));
            }
            id = id.wrapping_add(1);
            // a refused send (nothing bound yet) is retried like a lost answer
            let _ = sock.send_to(&query(id, PROBE), self.addr());
            let mut buf = [0u8; 512];
            let answer_end = Instant::now() + Duration::from_millis(200);
            while Instant::now() < answer_end {
                match sock.recv_from(&mut buf) {
                    // any response (QR set) to this question: dnsmasq serves
                    Ok((n, _)) if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 => {
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    /// The address dnsmasq answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// How many questions dnsmasq has logged, the readiness probe's aside.
    pub fn queries(&self) -> usize {
        self.log
            .lines()
            .iter()
            .filter(|l| l.contains(": query[") && !l.contains(PROBE))
            .count()
    }

    /// Waits (up to `timeout`) until dnsmasq has logged at least `n` questions and
    /// returns how many it logged: its log lines reach us a moment after its answers.
    pub fn wait_queries(&self, n: usize, timeout: Duration) -> usize {
        let end = Instant::now() + timeout;
        loop {
            let seen = self.queries();
            if seen >= n || Instant::now() >= end {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A DNS query (RFC 1035 section 4.1) for the A record of `name`, recursion desired.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_a_wire_format_question() {
        let q = query(0x1234, "a.bc");
        assert_eq!(
            q,
            [
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1
            ]
        );
    }

    #[test]
    fn zone_collects_top_level_domains_once() {
        let z = DnsZone::new()
            .naptr(
                "Example.TEST.",
                10,
                10,
                "S",
                "SIP+D2U",
                "_sip._udp.example.test.",
            )
            .srv("_sip._udp.example.test", "sip1.example.test", 5060, 10, 0)
            .a("sip1.example.lab", Ipv4Addr::new(127, 0, 0, 10));
        assert_eq!(z.tlds, ["test", "lab"]);
        assert_eq!(
            z.args[0],
            "--naptr-record=example.test,10,10,S,SIP+D2U,,_sip._udp.example.test"
        );
    }
}
