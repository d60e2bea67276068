//! The chat load tool (issue 6, done-when 6): N idle and M active chat
//! clients against a real `namecall serve` process, then the same pattern
//! against `nats-server` in the same run.
//!
//! Shared by the `ws_load` bench (`cargo bench -p gateway --bench ws_load`)
//! and the smoke test (`gateway/tests/ws_load_smoke.rs`), which runs it with
//! a few clients for a second or two.
//!
//! # What is measured
//! - **Delivered messages/s**: `message` frames that reached the receiving
//!   client during the measured window, divided by its length.
//! - **End-to-end latency**: every message body carries the sender's wall
//!   clock (unix µs) at the moment it was written to the socket; the
//!   receiver subtracts it from its own clock on arrival (same machine).
//! - **CPU per delivery**: the system's user + system CPU time
//!   (`/proc/<pid>/stat`, the counters `getrusage` reports) over the window,
//!   divided by the deliveries.
//! - **Memory per idle connection**: the system's RSS after the idle
//!   clients connected, minus its RSS before, divided by N.
//!
//! # The pattern
//! Accounts are seeded into the gateway's directory before it starts (cheap
//! test hashes; clients `resume` with session tokens, as a returning app
//! does). Every client opens `/v1/ws?device=…`, resumes, and `sync`s until
//! live, so idle clients are real chat devices. Active client `i` sends
//! one-to-one text messages to active client `i+1` (a ring, so every
//! conversation has one sender and its seqs must arrive as 1, 2, 3 …), with
//! at most `window` un-acked sends in flight; receivers `ack` their cursor
//! every `ack_every` (250 ms by default) when they got something new, as a
//! client does, so delivered receipts flow back to the senders.
//!
//! NATS gets the same: N idle connections each subscribed to its own
//! subject, M active ones publishing to the next one's subject. NATS core
//! has no acknowledgement, so each publish is followed by a `PING` and the
//! `PONG` (sent after the server processed the publish) stands for the ack.
//! NATS stores nothing: it is the transport floor, not an equal.
//!
//! Clients connect from several loopback source addresses (127.0.0.2, …)
//! so that ephemeral ports are not the limit at 50k connections.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Clients per loopback source address (ephemeral ports per address are
/// about 28k).
const PER_SOURCE: usize = 15_000;

/// Connections being set up at once.
const CONNECT_PARALLEL: usize = 128;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Idle clients (connected, logged in, synced, silent).
    pub idle: usize,
    /// Active clients (each sends to the next and receives from the previous).
    pub active: usize,
    /// Un-acked sends each active client keeps in flight.
    pub window: usize,
    /// Total offered messages/s (`None`: as fast as acks allow).
    pub rate: Option<u64>,
    /// Load before measuring.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// The `namecall` binary.
    pub gateway_bin: PathBuf,
    /// The `nats-server` binary; `None` skips the comparison.
    pub nats_bin: Option<PathBuf>,
    /// Text bytes per message (besides the timestamp).
    pub text_len: usize,
    /// How often receivers ack their cursor (when they got something new).
    pub ack_every: Duration,
}

impl Config {
    /// A few clients for a few seconds, for CI.
    pub fn smoke(gateway_bin: PathBuf, nats_bin: Option<PathBuf>) -> Self {
        Config {
            idle: 20,
            active: 6,
            window: 2,
            rate: None,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            gateway_bin,
            nats_bin,
            text_len: 40,
            ack_every: Duration::from_millis(100),
        }
    }
}

/// What one system did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `namecall` or `nats-server`.
    pub system: String,
    /// Idle clients connected.
    pub idle: usize,
    /// Active clients.
    pub active: usize,
    /// Deliveries in the window per second.
    pub delivered_per_s: f64,
    /// Latency percentiles over the window, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest latency seen, ms.
    pub max_ms: f64,
    /// The system's CPU per delivery, µs.
    pub cpu_us_per_delivery: f64,
    /// The system's RSS growth per idle connection, bytes.
    pub bytes_per_idle: f64,
    /// The system's RSS at the end, bytes.
    pub rss_end: u64,
    /// Sends the system acknowledged, whole run.
    pub acked: u64,
    /// Messages received, whole run.
    pub delivered: u64,
    /// Errors: error frames, gaps or repeats in a conversation's seqs.
    pub errors: u64,
    /// Seconds to connect the idle clients.
    pub connect_idle_s: f64,
}

impl Report {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "{:<12} idle {:>6}  active {:>5}  {:>9.0} msgs/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  \
             cpu {:>6.1} µs/msg  {:>6.1} KiB/idle conn  rss {:>6.1} MiB  acked {} delivered {} errors {}  \
             (idle connect {:.1} s)",
            self.system,
            self.idle,
            self.active,
            self.delivered_per_s,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.cpu_us_per_delivery,
            self.bytes_per_idle / 1024.0,
            self.rss_end as f64 / (1024.0 * 1024.0),
            self.acked,
            self.delivered,
            self.errors,
            self.connect_idle_s,
        )
    }
}

/// Raises RLIMIT_NOFILE to its hard limit (children inherit it); returns
/// the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value of the type they expect.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

/// CPU time (user + system) and RSS of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    cpu: Duration,
    rss: u64,
}

fn proc_stat(pid: u32) -> anyhow::Result<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // fields after the parenthesised command name; utime and stime are 14 and 15
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        f.get(n - 3)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<u64>()
            .map_err(|e| anyhow!("/proc/{pid}/stat field {n}: {e}"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = field(14)? + field(15)?;
    let cpu = Duration::from_micros(ticks * 1_000_000 / hz);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(ProcStat {
        cpu,
        rss: rss_kib * 1024,
    })
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited during the run: {status}", self.name);
        }
        Ok(())
    }
}

/// Source addresses for `n` clients.
fn source_for(i: usize, n: usize) -> Ipv4Addr {
    let sources = n.div_ceil(PER_SOURCE).max(1);
    let k = (i % sources) as u8;
    Ipv4Addr::new(127, 0, 0, 2 + k)
}

async fn tcp_from(src: Ipv4Addr, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))
        .with_context(|| format!("bind {src}"))?;
    let stream = sock
        .connect(to)
        .await
        .with_context(|| format!("connect {src} -> {to}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Latency samples and counters shared by the clients of one run.
#[derive(Default)]
struct Shared {
    /// Sends written to the sockets.
    sent: AtomicU64,
    delivered: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    /// Set while the window is measured: receivers keep samples.
    measuring: AtomicBool,
    /// Set when senders must stop.
    stop: AtomicBool,
    /// Set after the drain: clients close.
    done: AtomicBool,
    samples: Mutex<Vec<u32>>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx.min(sorted.len() - 1)]) / 1000.0
}

/// Latency percentiles from the samples the receivers handed in when they
/// finished (call after the client tasks ended).
async fn fill_latency(report: &mut Report, shared: &Shared) {
    let mut samples = std::mem::take(&mut *shared.samples.lock().await);
    samples.sort_unstable();
    report.p50_ms = percentile(&samples, 0.50);
    report.p99_ms = percentile(&samples, 0.99);
    report.max_ms = samples.last().map_or(0.0, |&m| f64::from(m) / 1000.0);
}

/// Runs warm-up, window and drain with senders already connected; returns
/// the filled-in report.
async fn measure(
    cfg: &Config,
    shared: &Arc<Shared>,
    proc_: &mut Proc,
    mut report: Report,
) -> anyhow::Result<Report> {
    tokio::time::sleep(cfg.warmup).await;
    proc_.check_alive()?;
    let before = proc_stat(proc_.pid())?;
    let d0 = shared.delivered.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = t0.elapsed();
    let d1 = shared.delivered.load(Ordering::Relaxed);
    let after = proc_stat(proc_.pid())?;
    shared.stop.store(true, Ordering::Relaxed);
    // drain: every send answered, everything acked arrived, for 200 ms in a
    // row (an ack can reach its sender long before the message its receiver)
    let end = Instant::now() + Duration::from_secs(30);
    let mut settled = 0;
    while Instant::now() < end && settled < 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, a, d) = (
            shared.sent.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
        );
        settled = if s == a && a == d { settled + 1 } else { 0 };
    }
    proc_.check_alive()?;
    let n = d1 - d0;
    report.delivered_per_s = n as f64 / elapsed.as_secs_f64();
    report.cpu_us_per_delivery = if n == 0 {
        0.0
    } else {
        after.cpu.saturating_sub(before.cpu).as_secs_f64() * 1e6 / n as f64
    };
    report.rss_end = after.rss;
    report.acked = shared.acked.load(Ordering::Relaxed);
    report.delivered = shared.delivered.load(Ordering::Relaxed);
    report.errors = shared.errors.load(Ordering::Relaxed);
    if report.delivered != report.acked {
        report.errors += report.acked.abs_diff(report.delivered);
    }
    Ok(report)
}

// ---------------------------------------------------------------- gateway

/// Seeds `count` accounts (`lt0`, `lt1`, …) into the directory of
/// `data_dir` and returns their session tokens.
async fn seed_accounts(data_dir: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let db = data_dir.join("namecall.sqlite");
    let opts = directory::DirectoryOptions {
        hash_cost: directory::HashCost::Test,
        ..directory::DirectoryOptions::default()
    };
    let dir = directory::Directory::open_with(&format!("sqlite://{}", db.display()), opts)
        .await
        .map_err(|e| anyhow!("open directory: {e}"))?;
    let now = SystemTime::now();
    let display = directory::DisplayName::parse("Load Test").map_err(|e| anyhow!("{e}"))?;
    let mut tokens = Vec::with_capacity(count);
    for i in 0..count {
        let login = directory::LoginName::parse(&login_of(i)).map_err(|e| anyhow!("{e}"))?;
        let user = dir
            .register(&login, &display, "load-test-password", now)
            .await
            .map_err(|e| anyhow!("register {login}: {e}"))?;
        let session = dir
            .open_session(user, now)
            .await
            .map_err(|e| anyhow!("session: {e}"))?;
        tokens.push(session.token.expose().to_owned());
    }
    dir.close().await;
    Ok(tokens)
}

fn login_of(i: usize) -> String {
    format!("lt{i}")
}

fn dm(a: usize, b: usize) -> String {
    let (x, y) = (login_of(a), login_of(b));
    if x < y {
        format!("dm:{x}+{y}")
    } else {
        format!("dm:{y}+{x}")
    }
}

fn start_gateway(bin: &Path, data_dir: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut child = Command::new(bin)
        .args(["serve", "--http", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
        .args(["--rtp-ports", "0-0", "--sip", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--dialplans"])
        .arg(data_dir.join("no-dialplans"))
        // the readiness line is info on `gateway`; per-session lines are not wanted
        .env(
            "RUST_LOG",
            "warn,gateway=info,gateway::ws=warn,gateway::chat=warn,gateway::calls=warn,\
             gateway::sip=warn,gateway::push=warn",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let mut proc_ = Proc {
        child,
        name: "namecall",
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.contains("namecall ready") {
                eprintln!("namecall: {line}");
            }
            let _ = tx.send(line);
        }
    });
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(l) => l,
            Err(_) => {
                proc_.check_alive()?;
                bail!("namecall did not print its readiness line within 60 s");
            }
        };
        if let Some(addr) = line.split("namecall ready http=").nth(1) {
            let addr: SocketAddr = addr
                .trim()
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .context("readiness address")?;
            return Ok((proc_, addr));
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

fn ws_config() -> WebSocketConfig {
    // small buffers: 50k clients in this process
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a chat device for client `i`: upgrade, resume, sync until live.
async fn chat_client(addr: SocketAddr, i: usize, n: usize, token: &str) -> anyhow::Result<Ws> {
    let stream = tcp_from(source_for(i, n), addr).await?;
    let url = format!("ws://{addr}/v1/ws?device=lt{i}");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())).await?;
    let resume = serde_json::json!({"type": "resume", "token": token}).to_string();
    ws.send(Message::text(resume)).await?;
    expect_frame(&mut ws, "welcome").await?;
    ws.send(Message::text(r#"{"type":"sync"}"#)).await?;
    loop {
        let v = expect_frame(&mut ws, "batch").await?;
        if v["more"] == false {
            break;
        }
        ws.send(Message::text(r#"{"type":"sync"}"#)).await?;
    }
    Ok(ws)
}

async fn expect_frame(ws: &mut Ws, kind: &str) -> anyhow::Result<serde_json::Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| anyhow!("no {kind} frame within 30 s"))?
            .ok_or_else(|| anyhow!("socket closed waiting for {kind}"))??;
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            if v["type"] == kind {
                return Ok(v);
            }
            if v["type"] == "error" {
                bail!("error frame waiting for {kind}: {v}");
            }
        }
    }
}

/// Connects clients `range` in parallel (at most [`CONNECT_PARALLEL`] at once).
async fn connect_many(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    total: usize,
    tokens: &Arc<Vec<String>>,
) -> anyhow::Result<Vec<Ws>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut tasks = Vec::with_capacity(range.len());
    for i in range {
        let gate = Arc::clone(&gate);
        let tokens = Arc::clone(tokens);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            chat_client(addr, i, total, &tokens[i])
                .await
                .with_context(|| format!("client {i}"))
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Keeps an idle client's socket open and read (pings, presence) until
/// `stop` flips; no timer, so 18k idle clients cost this process nothing.
fn hold_idle(ws: Ws, mut stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ws = ws;
        loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(_)) => {}
                    _ => return,
                },
                _ = stop.changed() => {
                    let _ = ws.close(None).await;
                    return;
                }
            }
        }
    })
}

/// `"key":<digits>` in a JSON text, without parsing it all.
fn num_field(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The sender's timestamp in a message text `t<µs> …`.
fn stamp_of(text: &str) -> Option<u64> {
    num_field(text, "\"text\":\"t")
}

/// When a paced client sends first: the clients' phases are spread evenly
/// over one send period, so the offered load is smooth. (All clients
/// starting at once would send in bursts of `active` messages every period,
/// and the latency measured would be the burst's queue, not the rate's.)
fn paced_start(me: usize, cfg: &Config) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    match cfg.rate {
        Some(rate) if rate > 0 && cfg.active > 0 => {
            let period = cfg.active as f64 / rate as f64;
            let phase = (me % cfg.active) as f64 / cfg.active as f64;
            now + Duration::from_secs_f64(period * phase)
        }
        _ => now,
    }
}

/// Paced clients wait for their next send slot (`rate` sends/s each); false once the
/// run is stopping. Unpaced clients go at once.
async fn paced_turn(
    next_send: &mut tokio::time::Instant,
    rate: Option<f64>,
    stop: &AtomicBool,
) -> bool {
    if let Some(rate) = rate {
        *next_send += Duration::from_secs_f64(1.0 / rate);
        tokio::time::sleep_until(*next_send).await;
    }
    !stop.load(Ordering::Relaxed)
}

/// One active chat client: sends to `to`, receives from its predecessor.
async fn run_active(
    ws: Ws,
    me: usize,
    to: usize,
    cfg: Config,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let window = Arc::new(Semaphore::new(cfg.window));
    let conversation = dm(me, to);
    let filler: String = "x".repeat(cfg.text_len);
    let per_client_rate = cfg.rate.map(|r| (r as f64 / cfg.active as f64).max(0.001));
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    // reader: acks release the window; messages are timed and checked
    let reader = {
        let shared = Arc::clone(&shared);
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            let mut last_seq: u64 = 0;
            let mut samples: Vec<u32> = Vec::new();
            while let Some(msg) = stream.next().await {
                let Ok(Message::Text(t)) = msg else {
                    if msg.is_err() {
                        break;
                    }
                    continue;
                };
                let t = t.as_str();
                if t.starts_with(r#"{"type":"ack""#) {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                } else if t.starts_with(r#"{"type":"message""#) {
                    let arrived = now_us();
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    match (
                        stamp_of(t),
                        num_field(t, "\"seq\":"),
                        num_field(t, "\"cursor\":"),
                    ) {
                        (Some(sent), Some(seq), Some(cursor)) => {
                            if seq != last_seq + 1 {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            last_seq = seq;
                            let _ = ack_tx.send(cursor);
                            if shared.measuring.load(Ordering::Relaxed) {
                                samples
                                    .push(arrived.saturating_sub(sent).min(u32::MAX as u64) as u32);
                            }
                        }
                        _ => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if t.starts_with(r#"{"type":"error""#) {
                    eprintln!("client {me}: {t}");
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                }
            }
            shared.samples.lock().await.extend(samples);
        })
    };
    let mut next_send = paced_start(me, &cfg);
    let mut n: u64 = 0;
    let mut top_cursor = 0u64;
    let mut acked_cursor = 0u64;
    let mut ack_tick = tokio::time::interval(cfg.ack_every);
    ack_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            permit = window.acquire() => {
                let Ok(permit) = permit else { break };
                permit.forget();
                if !paced_turn(&mut next_send, per_client_rate, &shared.stop).await {
                    break;
                }
                n += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let frame = format!(
                    r#"{{"type":"send","conversation":"{conversation}","client_id":"c{me}-{n}","body":{{"kind":"text","text":"t{} {filler}"}}}}"#,
                    now_us()
                );
                sink.send(Message::text(frame)).await?;
            }
            Some(c) = ack_rx.recv() => top_cursor = top_cursor.max(c),
            _ = ack_tick.tick() => {
                if top_cursor > acked_cursor {
                    acked_cursor = top_cursor;
                    sink.send(Message::text(format!(r#"{{"type":"ack","cursor":{top_cursor}}}"#))).await?;
                }
            }
        }
    }
    // keep receiving (the reader task) and acking until the drain ends
    let end = tokio::time::Instant::now() + Duration::from_secs(22);
    loop {
        tokio::select! {
            Some(c) = ack_rx.recv() => top_cursor = top_cursor.max(c),
            _ = ack_tick.tick() => {
                if top_cursor > acked_cursor {
                    acked_cursor = top_cursor;
                    sink.send(Message::text(format!(r#"{{"type":"ack","cursor":{top_cursor}}}"#))).await?;
                }
            }
            _ = tokio::time::sleep_until(end) => break,
            _ = shared_done(&shared) => break,
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    Ok(())
}

/// Resolves when the run is over (set after the drain).
async fn shared_done(shared: &Shared) {
    while !shared.done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What one half of a run (namecall or NATS) has set up before measuring.
struct Phase {
    system: &'static str,
    proc_: Proc,
    shared: Arc<Shared>,
    base: ProcStat,
    with_idle: ProcStat,
    connect_idle_s: f64,
    senders: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    holders: Vec<tokio::task::JoinHandle<()>>,
    idle_stop: tokio::sync::watch::Sender<bool>,
}

/// Measures a half, then stops its senders and idle clients and the server
/// and fills in the latencies.
async fn finish(cfg: &Config, p: Phase) -> anyhow::Result<Report> {
    let Phase {
        system,
        mut proc_,
        shared,
        base,
        with_idle,
        connect_idle_s,
        senders,
        holders,
        idle_stop,
    } = p;
    let report = Report {
        system: system.into(),
        idle: cfg.idle,
        active: cfg.active,
        bytes_per_idle: if cfg.idle == 0 {
            0.0
        } else {
            with_idle.rss.saturating_sub(base.rss) as f64 / cfg.idle as f64
        },
        connect_idle_s,
        ..Report::default()
    };
    let mut report = measure(cfg, &shared, &mut proc_, report).await;
    shared.done.store(true, Ordering::Relaxed);
    for s in senders {
        match tokio::time::timeout(Duration::from_secs(30), s).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("{system} sender: {e:#}"),
            Ok(Err(e)) => eprintln!("{system} sender task: {e}"),
            Err(_) => eprintln!("{system} sender did not finish"),
        }
    }
    let _ = idle_stop.send(true);
    for h in holders {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    drop(proc_);
    if let Ok(r) = report.as_mut() {
        fill_latency(r, &shared).await;
    }
    report
}

/// The gateway half of a run.
pub async fn run_gateway(cfg: &Config) -> anyhow::Result<Report> {
    if cfg.active < 3 {
        bail!("at least 3 active clients (a ring where each conversation has one sender)");
    }
    let work = tempfile::tempdir()?;
    let total = cfg.idle + cfg.active;
    let t = Instant::now();
    let tokens = Arc::new(seed_accounts(work.path(), total).await?);
    eprintln!(
        "seeded {total} accounts in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (gw, addr) = start_gateway(&cfg.gateway_bin, work.path())?;
    let shared = Arc::new(Shared::default());
    let (idle_stop, idle_stopped) = tokio::sync::watch::channel(false);
    // actives first, then a short burst so lazily built state exists before the baseline
    let actives = connect_many(addr, 0..cfg.active, total, &tokens).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc_stat(gw.pid())?;
    let t = Instant::now();
    let idle = connect_many(addr, cfg.active..total, total, &tokens).await?;
    let connect_idle_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = proc_stat(gw.pid())?;
    let holders: Vec<_> = idle
        .into_iter()
        .map(|ws| hold_idle(ws, idle_stopped.clone()))
        .collect();
    let mut senders = Vec::with_capacity(cfg.active);
    for (i, ws) in actives.into_iter().enumerate() {
        let to = (i + 1) % cfg.active;
        senders.push(tokio::spawn(run_active(
            ws,
            i,
            to,
            cfg.clone(),
            Arc::clone(&shared),
        )));
    }
    finish(
        cfg,
        Phase {
            system: "namecall",
            proc_: gw,
            shared,
            base,
            with_idle,
            connect_idle_s,
            senders,
            holders,
            idle_stop,
        },
    )
    .await
}

// ---------------------------------------------------------------- NATS

fn start_nats(bin: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let child = Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let mut proc_ = Proc {
        child,
        name: "nats-server",
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        proc_.check_alive()?;
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok((proc_, addr));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nats-server did not listen on {addr} within 20 s")
}

type NatsReader = tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>;
type NatsWriter = tokio::net::tcp::OwnedWriteHalf;

/// Connects client `i` and subscribes to its subject; returns once the
/// server confirmed (`PONG`).
async fn nats_client(
    addr: SocketAddr,
    i: usize,
    n: usize,
) -> anyhow::Result<(NatsReader, NatsWriter)> {
    let stream = tcp_from(source_for(i, n), addr).await?;
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::with_capacity(4096, r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if !line.starts_with("INFO") {
        bail!("nats: expected INFO, got {line:?}");
    }
    w.write_all(
        format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"lt{i}\"}}\r\nSUB u.{i} 1\r\nPING\r\n"
        )
        .as_bytes(),
    )
    .await?;
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("nats closed the connection");
        }
        if line.starts_with("PONG") {
            return Ok((r, w));
        }
        if line.starts_with("-ERR") {
            bail!("nats: {line}");
        }
    }
}

async fn nats_connect_many(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    total: usize,
) -> anyhow::Result<Vec<(NatsReader, NatsWriter)>> {
    let gate = Arc::new(Semaphore::new(CONNECT_PARALLEL));
    let mut tasks = Vec::with_capacity(range.len());
    for i in range {
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            nats_client(addr, i, total)
                .await
                .with_context(|| format!("nats client {i}"))
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// Answers the server's `PING`s of an idle NATS client until `stop` flips.
fn nats_hold_idle(
    (mut r, mut w): (NatsReader, NatsWriter),
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut line = String::new();
        loop {
            line.clear();
            tokio::select! {
                n = r.read_line(&mut line) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.starts_with("PING") && w.write_all(b"PONG\r\n").await.is_err() {
                            return;
                        }
                    }
                },
                _ = stop.changed() => return,
            }
        }
    })
}

/// One active NATS client: publishes to `u.<to>`, reads `u.<me>`.
async fn nats_active(
    (mut r, mut w): (NatsReader, NatsWriter),
    me: usize,
    to: usize,
    cfg: Config,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let window = Arc::new(Semaphore::new(cfg.window));
    let filler: String = "x".repeat(cfg.text_len);
    let per_client_rate = cfg.rate.map(|r| (r as f64 / cfg.active as f64).max(0.001));
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let reader = {
        let shared = Arc::clone(&shared);
        let window = Arc::clone(&window);
        tokio::spawn(async move {
            let mut samples: Vec<u32> = Vec::new();
            let mut line = String::new();
            let mut payload = Vec::new();
            let mut last: u64 = 0;
            loop {
                line.clear();
                match r.read_line(&mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if line.starts_with("MSG ") {
                    let arrived = now_us();
                    let len: usize = line
                        .trim_end()
                        .rsplit(' ')
                        .next()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    payload.resize(len + 2, 0);
                    if r.read_exact(&mut payload).await.is_err() {
                        break;
                    }
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                    // payload: "<n> t<µs> xxx"
                    let text = std::str::from_utf8(&payload[..len]).unwrap_or("");
                    let mut parts = text.split(' ');
                    let n: Option<u64> = parts.next().and_then(|s| s.parse().ok());
                    let sent: Option<u64> = parts
                        .next()
                        .and_then(|s| s.strip_prefix('t'))
                        .and_then(|s| s.parse().ok());
                    match (n, sent) {
                        (Some(n), Some(sent)) => {
                            if n != last + 1 {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                            }
                            last = n;
                            if shared.measuring.load(Ordering::Relaxed) {
                                samples
                                    .push(arrived.saturating_sub(sent).min(u32::MAX as u64) as u32);
                            }
                        }
                        _ => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                } else if line.starts_with("PONG") {
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                } else if line.starts_with("PING") {
                    let _ = pong_tx.send(());
                } else if line.starts_with("-ERR") {
                    eprintln!("nats client {me}: {}", line.trim_end());
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            shared.samples.lock().await.extend(samples);
        })
    };
    let mut next_send = paced_start(me, &cfg);
    let mut n: u64 = 0;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::select! {
            permit = window.acquire() => {
                let Ok(permit) = permit else { break };
                permit.forget();
                if !paced_turn(&mut next_send, per_client_rate, &shared.stop).await {
                    break;
                }
                n += 1;
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let payload = format!("{n} t{} {filler}", now_us());
                let frame = format!("PUB u.{to} {}\r\n{payload}\r\nPING\r\n", payload.len());
                w.write_all(frame.as_bytes()).await?;
            }
            Some(()) = pong_rx.recv() => w.write_all(b"PONG\r\n").await?,
        }
    }
    let end = tokio::time::Instant::now() + Duration::from_secs(22);
    loop {
        tokio::select! {
            Some(()) = pong_rx.recv() => w.write_all(b"PONG\r\n").await?,
            _ = tokio::time::sleep_until(end) => break,
            _ = shared_done(&shared) => break,
        }
    }
    let _ = w.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    Ok(())
}

/// The NATS half of a run.
pub async fn run_nats(cfg: &Config, bin: &Path) -> anyhow::Result<Report> {
    let total = cfg.idle + cfg.active;
    let (nats, addr) = start_nats(bin)?;
    let shared = Arc::new(Shared::default());
    let (idle_stop, idle_stopped) = tokio::sync::watch::channel(false);
    let actives = nats_connect_many(addr, 0..cfg.active, total).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc_stat(nats.pid())?;
    let t = Instant::now();
    let idle = nats_connect_many(addr, cfg.active..total, total).await?;
    let connect_idle_s = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_idle = proc_stat(nats.pid())?;
    let holders: Vec<_> = idle
        .into_iter()
        .map(|c| nats_hold_idle(c, idle_stopped.clone()))
        .collect();
    let mut senders = Vec::with_capacity(cfg.active);
    for (i, c) in actives.into_iter().enumerate() {
        let to = (i + 1) % cfg.active;
        senders.push(tokio::spawn(nats_active(
            c,
            i,
            to,
            cfg.clone(),
            Arc::clone(&shared),
        )));
    }
    finish(
        cfg,
        Phase {
            system: "nats-server",
            proc_: nats,
            shared,
            base,
            with_idle,
            connect_idle_s,
            senders,
            holders,
            idle_stop,
        },
    )
    .await
}

/// Both halves and the ratio lines.
pub async fn run(cfg: &Config) -> anyhow::Result<(Report, Option<Report>)> {
    let ours = run_gateway(cfg).await?;
    println!("{}", ours.line());
    let theirs = match &cfg.nats_bin {
        Some(bin) => {
            let r = run_nats(cfg, bin).await?;
            println!("{}", r.line());
            println!("{}", ratio_line(&ours, &r));
            Some(r)
        }
        None => None,
    };
    Ok((ours, theirs))
}

/// namecall relative to NATS.
pub fn ratio_line(ours: &Report, theirs: &Report) -> String {
    let div = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
    format!(
        "ratio namecall/nats: throughput {:.3}x  p99 {:.2}x  cpu/msg {:.2}x  memory/idle conn {:.2}x",
        div(ours.delivered_per_s, theirs.delivered_per_s),
        div(ours.p99_ms, theirs.p99_ms),
        div(ours.cpu_us_per_delivery, theirs.cpu_us_per_delivery),
        div(ours.bytes_per_idle, theirs.bytes_per_idle),
    )
}

/// Finds `nats-server`: `$NATS_SERVER`, then the pinned one
/// `scripts/install-deps.sh` puts in `tests/tools/nats`, then `PATH`.
pub fn find_nats() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let pinned = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/tools/nats/bin/nats-server");
    if pinned.is_file() {
        return Some(pinned);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}
