//! coturn (Debian `coturn`, `turnserver`) as the TURN server web clients relay
//! through, on 127.0.0.1 with TURN REST API credentials (`use-auth-secret`).
//!
//! Ready when it answers a STUN Binding request on its listening port (RFC 5389),
//! never after a sleep.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command};
use std::time::Duration;

use crate::{Log, free_port, kill, require, spawn_logged, wait_for};

/// The realm coturn runs with.
pub const TURN_REALM: &str = "namecall.test";

/// STUN magic cookie (RFC 5389 section 6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// A running coturn; killed on drop.
pub struct Coturn {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    port: u16,
    /// coturn's log (stdout).
    pub log: Log,
}

impl Coturn {
    /// Starts coturn on a free port of 127.0.0.1, relaying on 127.0.0.1, with the
    /// shared `secret`; returns once a STUN Binding request is answered.
    ///
    /// # Errors
    /// `turnserver` missing, or it exits or stays silent for 20 s.
    pub fn start(secret: &str) -> io::Result<Coturn> {
        require("turnserver", "coturn")?;
        let dir = tempfile::Builder::new()
            .prefix("labkit-coturn-")
            .tempdir()?;
        let port = free_port();
        let mut cmd = Command::new("turnserver");
        // -n: no config file; --userdb/--pidfile in our folder (not /var)
        cmd.arg("-n")
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .arg("--listening-port")
            .arg(port.to_string())
            .arg("--use-auth-secret")
            .arg(format!("--static-auth-secret={secret}"))
            .arg(format!("--realm={TURN_REALM}"))
            .args([
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--log-file",
                "stdout",
                "--verbose",
            ])
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.path().join("turndb"));
        let log = Log::default();
        // owned by the handle at once, so an error or a panic while waiting kills it
        let mut turn = Coturn {
            child: Some(spawn_logged(cmd, &log)?),
            _dir: dir,
            port,
            log,
        };
        let addr = turn.addr();
        let ready = wait_for("coturn answering STUN", Duration::from_secs(20), || {
            if let Some(c) = turn.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(Err(st));
            }
            stun_binding(addr).map(Ok)
        });
        match ready {
            Ok(Ok(_)) => Ok(turn),
            Ok(Err(st)) => Err(io::Error::other(format!(
                "turnserver exited ({st}):\n{}",
                turn.log.tail(30)
            ))),
            Err(e) => Err(io::Error::other(format!("{e}:\n{}", turn.log.tail(30)))),
        }
    }

    /// The UDP address coturn listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Sends one STUN Binding request to `server` and returns the raw response when a Binding success response with our transaction id comes back
/// within 200 ms.
pub fn stun_binding(server: SocketAddr) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .ok()?;
    // a transaction id unique enough for one request: the process id and the clock
    let seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let txid: [u8; 12] = std::array::from_fn(|i| (seed >> ((i % 8) * 8)) as u8 ^ i as u8);
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&MAGIC_COOKIE);
    req.extend_from_slice(&txid);
    sock.send_to(&req, server).ok()?;
    let mut buf = [0u8; 1500];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    let resp = &buf[..n];
    // 0x0101: Binding success response
    (from == server && n >= 20 && resp[..2] == [0x01, 0x01] && resp[8..20] == txid)
        .then(|| resp.to_vec())
}
