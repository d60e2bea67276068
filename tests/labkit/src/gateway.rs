//! The `namecall` binary under test, and the node scripts that drive Chromium.
//!
//! [`Gateway::start`] runs the real binary (tests pass
//! `env!("CARGO_BIN_EXE_namecall")`) on free loopback ports with a temporary
//! data folder and waits for its readiness line; [`NodeRun`] runs a
//! playwright script next to it and collects the one JSON verdict line the
//! script prints. Both kill their process on drop.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{Log, kill, spawn_logged, wait_for};

/// A running `namecall serve`.
pub struct Gateway {
    child: Option<Child>,
    /// `host:port` of the HTTP server.
    pub addr: String,
    /// The gateway's stderr/stdout lines.
    pub log: Log,
}

impl Gateway {
    /// Starts `bin serve` as [`Gateway::start`] does, with the one dialplan `plan`
    /// written to `root/plans/<file>` (`--dialplans`) and its data in `root/data`.
    pub fn start_with_plan(bin: &Path, root: &Path, file: &str, plan: &str) -> io::Result<Gateway> {
        let plans = root.join("plans");
        std::fs::create_dir_all(&plans)?;
        std::fs::write(plans.join(file), plan)?;
        let plans_arg = plans.to_string_lossy().into_owned();
        Gateway::start(bin, &root.join("data"), &["--dialplans", &plans_arg])
    }

    /// Starts `bin serve` on 127.0.0.1 (HTTP, SIP and media on free ports)
    /// with `data_dir` and the `extra` arguments, and waits for
    /// `namecall ready http=<addr>`.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> io::Result<Gateway> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--http", "127.0.0.1:0", "--media-ip", "127.0.0.1"]);
        // OS-chosen media ports unless the test sets a range
        if !extra.contains(&"--rtp-ports") {
            cmd.args(["--rtp-ports", "0-0"]);
        }
        cmd.args(["--sip", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info,gateway=debug");
        let log = Log::default();
        let child = spawn_logged(cmd, &log)?;
        let mut gw = Gateway {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let line = gw
            .log
            .wait_for("namecall ready http=", Duration::from_secs(60))
            .map_err(|e| io::Error::other(format!("{e}:\n{}", gw.log.tail(30))))?;
        gw.addr = line
            .split("namecall ready http=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        Ok(gw)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path`: (status, body).
    pub fn get(&self, path: &str) -> io::Result<(u16, String)> {
        http_get(&self.addr, path)
    }

    /// One gauge or counter of `/metrics`.
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.get("/metrics")
            .ok()
            .and_then(|(_, b)| metric(&b, name))
    }

    /// Waits until `/metrics` shows `name` at `value`; returns the last body on timeout.
    pub fn wait_metric(&self, name: &str, value: i64, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            let body = self.get("/metrics").map(|(_, b)| b).unwrap_or_default();
            if metric(&body, name) == Some(value) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(body);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> io::Result<ExitStatus> {
        let Some(mut c) = self.child.take() else {
            return Err(io::Error::other("gateway already stopped"));
        };
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= end {
                let _ = c.kill();
                let _ = c.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "gateway did not exit after SIGTERM",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[]).map(|r| (r.status, r.body))
}

/// An HTTP answer: status, header block (lowercased names) and body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// The header lines, names lowercased (`content-type: ...`).
    pub headers: Vec<String>,
    /// The body (not chunk-decoded; the gateway sends content-length).
    pub body: String,
}

impl HttpReply {
    /// The value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
    }
}

/// A minimal HTTP/1.1 request without a body, with extra `headers`.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> io::Result<HttpReply> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status line: {resp}")))?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let headers = head
        .lines()
        .skip(1)
        .map(|l| match l.split_once(':') {
            Some((k, v)) => format!("{}:{v}", k.to_ascii_lowercase()),
            None => l.to_owned(),
        })
        .collect();
    Ok(HttpReply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The value of `name` in a Prometheus text body.
pub fn metric(body: &str, name: &str) -> Option<i64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A node script running in the background (a Chromium scenario).
pub struct NodeRun {
    child: Option<Child>,
    /// Its output lines (the verdict is the last line starting with `{`).
    pub log: Log,
}

impl NodeRun {
    /// Starts `node script args...`.
    pub fn spawn(script: &Path, args: &[&str]) -> io::Result<NodeRun> {
        crate::require("node", "nodejs")?;
        let mut cmd = Command::new("node");
        cmd.arg(script).args(args);
        let log = Log::default();
        let child = spawn_logged(cmd, &log)?;
        Ok(NodeRun {
            child: Some(child),
            log,
        })
    }

    /// Waits for the script to exit and returns its JSON verdict.
    pub fn verdict(mut self, timeout: Duration) -> io::Result<serde_json::Value> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("no child"))?;
        let end = Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("node script still running:\n{}", self.log.tail(30)),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // the output threads may lag the exit by a moment
        let line = wait_for("verdict line", Duration::from_secs(5), || {
            self.log
                .lines()
                .into_iter()
                .rev()
                .find(|l| l.starts_with('{'))
        })
        .map_err(|e| io::Error::other(format!("{e}:\n{}", self.log.tail(30))))?;
        serde_json::from_str(&line).map_err(io::Error::other)
    }
}

impl Drop for NodeRun {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// RMS amplitude (0..1, like sox's `stat`) of the last `seconds` of a 16-bit
/// PCM WAV (mono, or its first channel).
pub fn wav_tail_rms(path: &Path, seconds: f64) -> io::Result<f64> {
    let data = std::fs::read(path)?;
    let (rate, channels, samples) = pcm16(&data)?;
    let n = ((seconds * f64::from(rate)) as usize * channels).min(samples.len());
    let tail = &samples[samples.len() - n..];
    let sum: f64 = tail
        .iter()
        .step_by(channels.max(1))
        .map(|&s| f64::from(s) * f64::from(s))
        .sum();
    let count = tail.len().div_ceil(channels.max(1)).max(1);
    Ok((sum / count as f64).sqrt() / 32768.0)
}

/// (sample rate, channels, samples) of a PCM16 RIFF/WAVE file.
fn pcm16(data: &[u8]) -> io::Result<(u32, usize, Vec<i16>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    if data.len() < 12 || &data[..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err(bad("not a WAV file"));
    }
    let (mut rate, mut channels, mut pos) = (0u32, 1usize, 12usize);
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 16 <= data.len() {
            channels = usize::from(u16::from_le_bytes([data[body + 2], data[body + 3]]));
            rate = u32::from_le_bytes([
                data[body + 4],
                data[body + 5],
                data[body + 6],
                data[body + 7],
            ]);
        } else if id == b"data" {
            let end = (body + len).min(data.len());
            let samples = data[body..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok((rate.max(1), channels.max(1), samples));
        }
        pos = body + len + (len & 1);
    }
    Err(bad("no data chunk"))
}

/// The gateway as the lab company sees it: `namecall serve` with
/// `dialplans/examples/acme.yaml` pointed at `pbx`, data under `root`.
pub struct LabGateway {
    /// The running gateway.
    pub gw: Gateway,
    /// The dialplan folder it reads (`root/plans`): write files and send SIGHUP.
    pub plans: std::path::PathBuf,
    /// Its data directory (`root/data`).
    pub data: std::path::PathBuf,
}

impl LabGateway {
    /// Starts the gateway and waits until its `acme/main` trunk is registered at `pbx`.
    pub fn start(bin: &Path, pbx: &crate::Kamailio, root: &Path) -> io::Result<LabGateway> {
        LabGateway::start_with(bin, pbx, root, |plan| plan, &[])
    }

    /// Like [`LabGateway::start`], with the lab dialplan passed through `edit`
    /// (e.g. to add `dtmf: info` to the trunk) and `extra` serve arguments
    /// (e.g. `--rtp-ports`).
    pub fn start_with(
        bin: &Path,
        pbx: &crate::Kamailio,
        root: &Path,
        edit: impl FnOnce(String) -> String,
        extra: &[&str],
    ) -> io::Result<LabGateway> {
        let plans = root.join("plans");
        let data = root.join("data");
        std::fs::create_dir_all(&plans)?;
        let acme =
            std::fs::read_to_string(crate::workspace_root().join("dialplans/examples/acme.yaml"))?
                .replace("127.0.0.1:5070", &pbx.addr().to_string());
        std::fs::write(plans.join("acme.yaml"), edit(acme))?;
        let plans_arg = plans.to_string_lossy().into_owned();
        let mut args = vec!["--dialplans", plans_arg.as_str()];
        args.extend_from_slice(extra);
        let gw = Gateway::start(bin, &data, &args)?;
        wait_for("trunk registered", Duration::from_secs(20), || {
            (!pbx.contacts("trunk").is_empty()).then_some(())
        })
        .map_err(|e| io::Error::other(format!("{e}\n{}", gw.log.tail(40))))?;
        Ok(LabGateway { gw, plans, data })
    }
}
