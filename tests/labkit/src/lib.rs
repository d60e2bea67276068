//! labkit: the real third-party peers of namecall's interop tests, started on
//! loopback, one set per test.
//!
//! Nothing here is a mock. [`Kamailio`] runs Debian's `kamailio` with
//! `tests/lab/kamailio.cfg` as the company's registrar/proxy (digest auth);
//! [`Baresip`] runs Debian's `baresip` as an auto-answering desk phone that
//! plays a WAV and records what it hears; [`sipp`] runs SIPp scenarios;
//! [`Dnsmasq`] serves the NAPTR/SRV/A records of the RFC 3263 tests;
//! [`Coturn`] is the TURN server web clients relay through;
//! [`dtmf_in_wav`] decodes DTMF keys from a recording with multimon-ng.
//! Every peer gets free ports and its own temporary folder, so tests run in
//! parallel and leave nothing behind: each handle kills its process on drop.
//!
//! # Readiness, not sleeps
//!
//! Process start on the shared CI machine can stall for seconds. Every
//! `start` waits on a readiness signal (Kamailio's control socket answering,
//! baresip's registration seen in Kamailio's location table, a DNS query
//! answered by dnsmasq) with generous timeouts, never on a fixed sleep.
//!
//! # Installing the peers
//!
//! `scripts/install-deps.sh` installs them; a missing binary is an error that
//! names the package, never a skipped test.

pub mod dns;
pub mod gateway;
pub mod turn;

pub use dns::{DnsZone, Dnsmasq};
pub use gateway::{
    Gateway, HttpReply, LabGateway, NodeRun, http_get, http_request, metric, wav_tail_rms,
};
pub use turn::Coturn;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root (labkit lives in `tests/labkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// Realm of the lab PBX.
pub const REALM: &str = "pbx.lab";

/// A port that is free on 127.0.0.1 for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let udp = match UdpSocket::bind("127.0.0.1:0") {
            Ok(s) => s,
            Err(_) => continue,
        };
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(0);
        if port == 0 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1");
}

/// Polls `f` every 20 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> io::Result<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("timed out waiting for {what}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn require(bin: &str, package: &str) -> io::Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "`{bin}` not found: install Debian package `{package}` (scripts/install-deps.sh)"
            ),
        ))
    }
}

/// Collects a child's output lines in memory so a test can wait for a line
/// and print the log when it fails.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn attach(&self, r: impl Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                if let Ok(mut l) = lines.lock() {
                    l.push(line);
                }
            }
        });
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// True when some line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0
            .lock()
            .map(|l| l.iter().any(|x| x.contains(needle)))
            .unwrap_or(false)
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> io::Result<String> {
        wait_for(needle, timeout, || {
            self.0
                .lock()
                .ok()
                .and_then(|l| l.iter().find(|x| x.contains(needle)).cloned())
        })
    }

    /// The last `n` lines, joined, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let l = self.lines();
        l[l.len().saturating_sub(n)..].join("\n")
    }
}

fn spawn_logged(mut cmd: Command, log: &Log) -> io::Result<Child> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(o) = child.stdout.take() {
        log.attach(o);
    }
    if let Some(e) = child.stderr.take() {
        log.attach(e);
    }
    Ok(child)
}

fn kill(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Kamailio as the company's registrar and proxy (`tests/lab/kamailio.cfg`):
/// REGISTER is challenged with 401, other requests with 407, except from
/// 127.0.0.2 (an IP-authenticated trunk). Dialling a subscriber looks up its
/// registration; dialling anything else from a desk phone goes to the
/// contact registered by user `trunk`.
pub struct Kamailio {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    /// Kamailio's stdout/stderr.
    pub log: Log,
}

impl Kamailio {
    /// Starts Kamailio on a free port with these `(user, password)` accounts.
    pub fn start(accounts: &[(&str, &str)]) -> io::Result<Kamailio> {
        require("kamailio", "kamailio")?;
        let dir = tempfile::Builder::new()
            .prefix("labkit-kamailio-")
            .tempdir()?;
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db)?;
        // db_text tables, as kamailio's auth_db reads them (plain passwords, calculate_ha1)
        let mut t = String::from(
            "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) \n",
        );
        for (i, (u, p)) in accounts.iter().enumerate() {
            t.push_str(&format!(
                "{}:{u}:{REALM}:{p}:{}:{}\n",
                i + 1,
                md5_hex(&format!("{u}:{REALM}:{p}")),
                md5_hex(&format!("{u}@{REALM}:{REALM}:{p}"))
            ));
        }
        std::fs::write(db.join("subscriber"), t)?;
        std::fs::write(
            db.join("version"),
            "id(int,auto) table_name(string) table_version(int) \n1:subscriber:7\n",
        )?;
        let mut k = Kamailio {
            child: None,
            dir,
            port: free_port(),
            log: Log::default(),
        };
        k.spawn()?;
        Ok(k)
    }

    fn ctl(&self) -> PathBuf {
        self.dir.path().join("kamailio.ctl")
    }

    fn spawn(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.ctl());
        let cfg = workspace_root().join("tests/lab/kamailio.cfg");
        let mut cmd = Command::new("kamailio");
        cmd.args(["-DD", "-E", "-f"]).arg(&cfg);
        cmd.arg("-A").arg(format!(
            "DBURL=\"text://{}\"",
            self.dir.path().join("db").display()
        ));
        cmd.arg("-A")
            .arg(format!("CTLSOCK=\"unix:{}\"", self.ctl().display()));
        cmd.arg("-A").arg(format!("SIP_PORT={}", self.port));
        cmd.args([
            "-m",
            "64",
            "-M",
            "8",
            "-Y",
            &self.dir.path().display().to_string(),
        ]);
        self.child = Some(spawn_logged(cmd, &self.log)?);
        let ready = wait_for("kamailio control socket", Duration::from_secs(20), || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                return Some(Err(st));
            }
            self.kamcmd(&["core.version"])
                .ok()
                .filter(|o| o.contains("kamailio"))
                .map(Ok)
        });
        match ready {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(st)) => Err(io::Error::other(format!(
                "kamailio exited ({st}):\n{}",
                self.log.tail(30)
            ))),
            Err(e) => Err(io::Error::other(format!("{e}:\n{}", self.log.tail(30)))),
        }
    }

    /// The UDP/TCP address Kamailio listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs `kamcmd` against this instance's control socket.
    pub fn kamcmd(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(format!("unix:{}", self.ctl().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }

    /// The contacts `user` has registered (empty when not registered).
    pub fn contacts(&self, user: &str) -> Vec<String> {
        let out = self
            .kamcmd(&["ul.lookup", "location", &format!("s:{user}")])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("Address:"))
            .map(|a| a.trim().to_string())
            .collect()
    }

    /// Stops Kamailio (registrations are in memory, so they are lost) and starts
    /// it again on the same port.
    pub fn restart(&mut self) -> io::Result<()> {
        kill(&mut self.child);
        self.spawn()
    }

    /// Stops Kamailio.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts a [`Kamailio::stop`]ped instance again on the same port, with
    /// the same accounts and an empty location table (a site coming back
    /// after an outage); returns once its control socket answers. Does
    /// nothing to an instance that still runs.
    pub fn start_again(&mut self) -> io::Result<()> {
        if let Some(c) = self.child.as_mut()
            && matches!(c.try_wait(), Ok(None))
        {
            return Ok(());
        }
        self.child = None;
        self.spawn()
    }

    /// Whether the process is running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Makes a speech WAV with espeak-ng (resampled by sox), cached under the
/// target folder. Returns its path.
pub fn speech_wav(text: &str, rate: u32, name: &str) -> io::Result<PathBuf> {
    require("espeak-ng", "espeak-ng")?;
    require("sox", "sox")?;
    let dir = std::env::temp_dir().join("labkit-media");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{name}-{rate}.wav"));
    if out.exists() {
        return Ok(out);
    }
    // unique per call: tests of one process may make the same file at once
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let uniq = format!(
        "{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let raw = dir.join(format!("{name}-raw-{uniq}.wav"));
    let st = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()?;
    if !st.success() {
        return Err(io::Error::other("espeak-ng failed"));
    }
    let tmp = dir.join(format!("{name}-{rate}-{uniq}.wav"));
    let st = Command::new("sox")
        .arg(&raw)
        .args(["-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .arg(&tmp)
        .status()?;
    let _ = std::fs::remove_file(&raw);
    if !st.success() {
        return Err(io::Error::other("sox failed"));
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// The DTMF keys heard in a WAV, in order, as decoded by multimon-ng
/// (Debian `multimon-ng`, `-a DTMF -t wav`; it reads the file through sox).
/// One character per key press: a tone held for a while is still one key.
pub fn dtmf_in_wav(path: &Path) -> io::Result<String> {
    require("multimon-ng", "multimon-ng")?;
    require("sox", "sox")?;
    let out = Command::new("multimon-ng")
        .args(["-q", "-a", "DTMF", "-t", "wav"])
        .arg(path)
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "multimon-ng failed ({}) on {}: {text}{}",
            out.status,
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DTMF: "))
        .filter_map(|k| k.trim().chars().next())
        .collect())
}

/// `(length in seconds, RMS amplitude)` of a WAV, measured by sox.
pub fn wav_stats(path: &Path) -> io::Result<(f64, f64)> {
    let out = Command::new("sox")
        .arg(path)
        .args(["-n", "stat"])
        .output()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    match (field("Length (seconds)"), field("RMS     amplitude")) {
        (Some(len), Some(rms)) => Ok((len, rms)),
        _ => Err(io::Error::other(format!(
            "sox stat gave no length/RMS for {}: {text}",
            path.display()
        ))),
    }
}

/// A desk phone: Debian's baresip, registered to a [`Kamailio`] as extension
/// `ext`, auto-answering, G.711 only, playing `play` into every call and
/// recording what it hears into its recording folder. Driven through
/// baresip's `ctrl_tcp` socket (netstring JSON).
pub struct Baresip {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The extension (SIP user).
    pub ext: String,
    /// SIP port baresip listens on.
    pub sip_port: u16,
    ctrl_port: u16,
    cons_port: u16,
    /// baresip's stdout/stderr.
    pub log: Log,
}

impl Baresip {
    /// Starts an auto-answering phone and waits until Kamailio has its registration.
    pub fn start(pbx: &Kamailio, ext: &str, password: &str, play: &Path) -> io::Result<Baresip> {
        Baresip::start_with(pbx, ext, password, play, true)
    }

    /// Starts the phone, auto-answering or ringing until told (`accept` command).
    pub fn start_with(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
        auto_answer: bool,
    ) -> io::Result<Baresip> {
        let mode = if auto_answer { "auto" } else { "manual" };
        Baresip::start_mode(pbx, ext, password, play, mode)
    }

    /// Starts the phone with baresip's `answermode`: `auto`, `manual`, or
    /// `early` (answers 183 with SDP and plays its WAV as early media until
    /// told to `accept`).
    pub fn start_mode(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
        answermode: &str,
    ) -> io::Result<Baresip> {
        Baresip::start_full(
            pbx,
            ext,
            password,
            play,
            answermode,
            None,
            &PhoneAudio::G711,
            false,
        )
    }

    /// Starts an auto-answering video phone: G.711 audio plus VP8 video (baresip's
    /// `vp8` module) from the `fakevideo` source, decoded into its `fakevideo`
    /// display. `callstat` on its control socket reports the video stream.
    pub fn start_video(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
    ) -> io::Result<Baresip> {
        Baresip::start_full(
            pbx,
            ext,
            password,
            play,
            "auto",
            None,
            &PhoneAudio::G711,
            true,
        )
    }

    /// Starts an auto-answering phone that offers and accepts only `audio`
    /// (G.722: baresip's `g722` module, `G722/16000/1`; Opus: its `opus` module,
    /// `opus/48000/2`, as a PBX with Opus enabled offers it); `play` should be a
    /// WAV at [`PhoneAudio::sample_rate`].
    pub fn start_codec(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
        audio: PhoneAudio,
    ) -> io::Result<Baresip> {
        Baresip::start_full(pbx, ext, password, play, "auto", None, &audio, false)
    }

    /// Starts an auto-answering phone that can chat: received MESSAGEs
    /// show on its console ([`Baresip::console`]) and the `message` command
    /// ([`Control::message`]) sends a MESSAGE to `peer` (a SIP URI such as
    /// `sip:alice@127.0.0.1:5070`, through the PBX).
    pub fn start_messaging(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
        peer: &str,
    ) -> io::Result<Baresip> {
        Baresip::start_full(
            pbx,
            ext,
            password,
            play,
            "auto",
            Some(peer),
            &PhoneAudio::G711,
            false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_full(
        pbx: &Kamailio,
        ext: &str,
        password: &str,
        play: &Path,
        answermode: &str,
        chat_peer: Option<&str>,
        audio: &PhoneAudio,
        video: bool,
    ) -> io::Result<Baresip> {
        require("baresip", "baresip-core")?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("labkit-phone-{ext}-"))
            .tempdir()?;
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec)?;
        let sip_port = free_port();
        let ctrl_port = free_port();
        let cons_port = free_port();
        let rtp = free_port() / 2 * 2;
        let mut config = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t127.0.0.1:{sip_port}\n\
             net_interface\t\t127.0.0.1\n\
             call_local_timeout\t120\n\
             call_max_calls\t\t4\n\
             audio_player\t\taufile,/dev/null\n\
             audio_source\t\taufile,{play}\n\
             audio_alert\t\taufile,/dev/null\n\
             ausrc_srate\t\t{srate}\nauplay_srate\t\t{srate}\nausrc_channels\t\t1\nauplay_channels\t\t1\n\
             rtp_tos\t\t\t0\n\
             rtp_ports\t\t{rtp}-{}\n\
             rtcp_mux\t\tno\n\
             jitter_buffer_delay\t5-10\n\
             statmode_default\toff\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\t{codec_module}\nmodule\t\t\taufile.so\nmodule\t\t\tsndfile.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\nmodule_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n\
             snd_path\t\t{}\n",
            rtp + 99,
            rec.display(),
            play = play.display(),
            srate = audio.sample_rate(),
            codec_module = audio.module(),
        );
        if chat_peer.is_some() {
            // `contact` sends MESSAGE to the current contact (`message`
            // command); baresip 1.0 reports received MESSAGEs only as UI
            // output (menu's `<peer>: "<text>"`), which `cons` serves on TCP.
            config.push_str(&format!(
                "module_app\t\tcontact.so\nmodule\t\t\tcons.so\ncons_listen\t\t127.0.0.1:{cons_port}\n"
            ));
        }
        if video {
            config.push_str(
                "module\t\t\tvp8.so\nmodule\t\t\tfakevideo.so\n\
                 video_source\t\tfakevideo,nil\nvideo_display\t\tfakevideo,nil\n\
                 video_size\t\t320x240\nvideo_bitrate\t\t300000\nvideo_fps\t\t15\n",
            );
        }
        std::fs::write(dir.path().join("config"), config)?;
        let video_codecs = if video { ";video_codecs=VP8" } else { "" };
        std::fs::write(
            dir.path().join("accounts"),
            format!(
                "<sip:{ext}@{}>;auth_user={ext};auth_pass={password};answermode={};regint=300;audio_codecs={}{video_codecs}\n",
                pbx.addr(),
                answermode,
                audio.codecs(),
            ),
        )?;
        let contacts = match chat_peer {
            Some(peer) => format!("\"peer\" <{peer}>\n"),
            None => String::new(),
        };
        std::fs::write(dir.path().join("contacts"), contacts)?;
        let mut cmd = Command::new("baresip");
        cmd.arg("-4").arg("-f").arg(dir.path());
        let log = Log::default();
        let child = spawn_logged(cmd, &log)?;
        let phone = Baresip {
            child: Some(child),
            dir,
            ext: ext.to_string(),
            sip_port,
            ctrl_port,
            cons_port,
            log,
        };
        wait_for(
            &format!("phone {ext} registered"),
            Duration::from_secs(20),
            || (!pbx.contacts(ext).is_empty()).then_some(()),
        )
        .map_err(|e| io::Error::other(format!("{e}:\n{}", phone.log.tail(30))))?;
        Ok(phone)
    }

    /// Folder where baresip writes `dump-*-dec.wav` (heard) and `-enc.wav` (sent).
    pub fn recordings(&self) -> PathBuf {
        self.dir.path().join("rec")
    }

    /// Newest recording of what the phone heard (`dec`) or sent (`enc`).
    pub fn last_recording(&self, kind: &str) -> Option<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.recordings())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with(&format!("-{kind}.wav")))
            .collect();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.pop()
    }

    /// Connects to the text console of a phone started with
    /// [`Baresip::start_messaging`]; received MESSAGEs appear in its log as
    /// `<sender uri>: "<text>"`. Connect before the message is sent: the
    /// console only shows output while a client is connected.
    pub fn console(&self) -> io::Result<Log> {
        let s = wait_for("baresip console", Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", self.cons_port)).ok()
        })?;
        let log = Log::default();
        log.attach(s);
        Ok(log)
    }

    /// Opens a control connection (events arrive on it too).
    pub fn control(&self) -> io::Result<Control> {
        let s = TcpStream::connect(("127.0.0.1", self.ctrl_port))?;
        s.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Control {
            s,
            buf: Vec::new(),
            token: 0,
            events: Vec::new(),
        })
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Which codecs a lab phone speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneAudio {
    /// PCMU and PCMA at 8 kHz (what most desk phones offer).
    G711,
    /// G.722 only, audio at 16 kHz.
    G722,
    /// Opus only (48 kHz, as the PBXs with Opus offer it).
    Opus,
}

impl PhoneAudio {
    /// The phone's audio sample rate (its WAV's rate).
    pub fn sample_rate(&self) -> u32 {
        match self {
            PhoneAudio::G711 => 8000,
            PhoneAudio::G722 => 16000,
            PhoneAudio::Opus => 48000,
        }
    }

    fn module(&self) -> &'static str {
        match self {
            PhoneAudio::G711 => "g711.so",
            PhoneAudio::G722 => "g722.so",
            PhoneAudio::Opus => "opus.so",
        }
    }

    fn codecs(&self) -> &'static str {
        match self {
            PhoneAudio::G711 => "PCMU,PCMA",
            // baresip matches the codec by name, sample rate and channels
            PhoneAudio::G722 => "G722/16000/1",
            PhoneAudio::Opus => "opus/48000/2",
        }
    }
}

/// A baresip control connection.
pub struct Control {
    s: TcpStream,
    buf: Vec<u8>,
    token: u32,
    /// Events seen so far (`{"event":true,"type":"CALL_ESTABLISHED",...}`).
    pub events: Vec<serde_json::Value>,
}

impl Control {
    fn read_one(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let n: usize = std::str::from_utf8(&self.buf[..colon]).ok()?.parse().ok()?;
                if self.buf.len() > colon + n + 1 {
                    let msg = self.buf[colon + 1..colon + 1 + n].to_vec();
                    self.buf.drain(..colon + n + 2);
                    return serde_json::from_slice(&msg).ok();
                }
            }
            if Instant::now() >= end {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
    }

    /// Sends a baresip command (`dial`, `hangup`, `hold`, `resume`, ...) and
    /// returns its response.
    pub fn command(&mut self, command: &str, params: &str) -> io::Result<serde_json::Value> {
        self.token += 1;
        let tok = self.token.to_string();
        let body =
            serde_json::json!({"command": command, "params": params, "token": tok}).to_string();
        self.s
            .write_all(format!("{}:{},", body.len(), body).as_bytes())?;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Some(m) = self.read_one(Duration::from_millis(200)) {
                if m.get("response").is_some()
                    && m.get("token").and_then(|t| t.as_str()) == Some(&tok)
                {
                    return Ok(m);
                }
                if m.get("event").is_some() {
                    self.events.push(m);
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no response to {command}"),
        ))
    }

    /// Sends `text` as SIP MESSAGE to the phone's chat peer (see
    /// [`Baresip::start_messaging`]).
    pub fn message(&mut self, text: &str) -> io::Result<serde_json::Value> {
        self.command("message", text)
    }

    /// Waits for an event of this type (e.g. `CALL_ESTABLISHED`, `CALL_CLOSED`,
    /// `CALL_DTMF_START`) and returns it; events already seen count.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> io::Result<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .events
                .iter()
                .position(|e| e.get("type").and_then(|t| t.as_str()) == Some(kind))
            {
                return Ok(self.events.remove(i));
            }
            if Instant::now() >= end {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no {kind} event; saw {:?}", self.events),
                ));
            }
            if let Some(m) = self.read_one(Duration::from_millis(200))
                && m.get("event").is_some()
            {
                self.events.push(m);
            }
        }
    }
}

/// Runs SIPp with these arguments in `dir` and returns (success, stdout+stderr).
/// SIPp prints its statistics with `-trace_stat`-free `-m` runs on exit.
pub fn sipp(args: &[&str], dir: &Path, timeout: Duration) -> io::Result<(bool, String)> {
    require("sipp", "sip-tester")?;
    let log = Log::default();
    let mut cmd = Command::new("sipp");
    cmd.args(args).current_dir(dir);
    let mut child = spawn_logged(cmd, &log)?;
    let end = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            std::thread::sleep(Duration::from_millis(50));
            return Ok((st.success(), log.lines().join("\n")));
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((false, format!("sipp timed out\n{}", log.lines().join("\n"))));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A SIPp scenario from `tests/sipp/` playing a PBX (UAS) on a free port of
/// 127.0.0.1, in the background, for one call (`-m 1`); ready once its port is taken.
pub struct SippUas {
    /// The SIP port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    run: std::thread::JoinHandle<io::Result<(bool, String)>>,
}

impl SippUas {
    /// Starts `tests/sipp/<scenario>` with `extra` arguments (e.g. `-rtp_echo`);
    /// SIPp gives up after `timeout`.
    pub fn start(scenario: &str, extra: &[&str], timeout: Duration) -> io::Result<SippUas> {
        require("sipp", "sip-tester")?;
        let port = free_port();
        let dir = tempfile::Builder::new().prefix("labkit-sipp-").tempdir()?;
        let path = workspace_root().join("tests/sipp").join(scenario);
        let mut args: Vec<String> = [
            "-sf",
            &path.to_string_lossy(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-trace_err",
            "-timeout",
            &format!("{}s", timeout.as_secs()),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let run_dir = dir.path().to_path_buf();
        let run = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sipp(&args, &run_dir, timeout + Duration::from_secs(30))
        });
        wait_for("sipp listening", Duration::from_secs(20), || {
            UdpSocket::bind(("127.0.0.1", port)).is_err().then_some(())
        })?;
        Ok(SippUas { port, dir, run })
    }

    /// Waits for the scenario's end: `Ok` with SIPp's output when it passed, `Err`
    /// with that output and its error log when it failed.
    pub fn finish(self) -> Result<String, String> {
        let (ok, out) = match self.run.join() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(format!("sipp did not run: {e}")),
            Err(_) => return Err("the sipp thread panicked".into()),
        };
        if ok {
            return Ok(out);
        }
        let errors: String = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        Err(format!("{out}\n{errors}"))
    }
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
