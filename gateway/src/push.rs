//! Push notifications: the sending shell around `bridges::push`.
//!
//! The chat service puts a [`PushJob`] into a bounded channel when a new
//! post is stored for a user none of whose devices is connected
//! ([`bridges::ChatService::set_push_sink`]). One task here ([`run_sender`])
//! takes jobs off that channel and hands each to a [`PushProvider`] with a
//! bounded number in flight and a timeout each. A full channel drops the
//! job and a failed send is only logged: the message itself is stored and
//! syncs when a device connects, so push never blocks or fails chat.
//!
//! [`WebPushProvider`] delivers per RFC 8030 with the body and headers
//! `bridges::push::WebPush` builds (RFC 8291 encryption, RFC 8292 VAPID).
//! It sends with a small hyper + rustls client instead of the `web-push`
//! crate's clients, which use isahc/curl or hyper-tls, i.e. OpenSSL. APNs
//! and FCM would be further [`PushProvider`]s.
//!
//! The VAPID key pair is made on first start and kept in
//! `<data_dir>/vapid.key` (base64url private scalar, mode 0600); browsers
//! subscribe with its public half, served at `GET /v1/push/vapid`.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use bridges::ChatStore;
use bridges::push::{PushJob, WebPush};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, warn};

/// Jobs waiting to be sent before new ones are dropped.
pub const QUEUE: usize = 4096;
/// Sends in flight at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// Longest wait for one push service answer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// File in the data dir that keeps the VAPID private key.
pub const VAPID_FILE: &str = "vapid.key";

/// What became of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The push service accepted it.
    Accepted,
    /// The subscription is gone (404/410, or not allowed): forget it.
    Gone,
    /// Not delivered this time; the subscription stays.
    Failed(String),
}

/// A boxed future, so providers can sit behind `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way to deliver notifications (Web Push now; APNs/FCM later).
pub trait PushProvider: Send + Sync + 'static {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Delivers one job; must finish within the provider's own timeout.
    fn deliver<'a>(&'a self, job: &'a PushJob) -> BoxFuture<'a, PushOutcome>;
}

/// Settings of push delivery.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// VAPID `sub` claim: a `mailto:` or `https:` contact for push services.
    pub subject: String,
    /// Accept `http://` and private-address endpoints (a local push
    /// service in tests); real push services are public HTTPS.
    pub allow_http: bool,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Web Push over HTTPS (RFC 8030) with VAPID.
pub struct WebPushProvider {
    web: WebPush,
    client: HttpsClient,
    allow_http: bool,
    timeout: Duration,
}

impl WebPushProvider {
    /// A provider signing with `web`'s VAPID key.
    pub fn new(web: WebPush, allow_http: bool) -> Self {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Self {
            web,
            client,
            allow_http,
            timeout: SEND_TIMEOUT,
        }
    }

    async fn send(&self, job: &PushJob) -> PushOutcome {
        let endpoint = &job.subscription.endpoint;
        if !self.allow_http && !public_https(endpoint) {
            return PushOutcome::Gone;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let built = match self.web.request(job, now) {
            Ok(r) => r,
            Err(e) => return PushOutcome::Failed(e.to_string()),
        };
        let mut req = hyper::Request::post(built.endpoint.as_str());
        for (name, value) in &built.headers {
            req = req.header(*name, value);
        }
        let req = match req.body(Full::new(Bytes::from(built.body))) {
            Ok(r) => r,
            // an endpoint that is not a valid URI can never work
            Err(_) => return PushOutcome::Gone,
        };
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => PushOutcome::Failed("timed out".into()),
            Ok(Err(e)) => PushOutcome::Failed(e.to_string()),
            Ok(Ok(resp)) => match resp.status().as_u16() {
                200..=299 => PushOutcome::Accepted,
                404 | 410 => PushOutcome::Gone,
                code => PushOutcome::Failed(format!("push service answered {code}")),
            },
        }
    }
}

/// True for an `https://` URL whose host is a name or a public IP: a
/// client must not make the gateway POST to its own network (push
/// services are public). Names that resolve inward are not caught here.
fn public_https(endpoint: &str) -> bool {
    let Ok(uri) = endpoint.parse::<hyper::Uri>() else {
        return false;
    };
    if uri.scheme_str() != Some("https") {
        return false;
    }
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            !(ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation())
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let seg0 = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || (seg0 & 0xfe00) == 0xfc00 // unique local
                || (seg0 & 0xffc0) == 0xfe80 // link local
                || ip.to_ipv4_mapped().is_some())
        }
        Err(_) => true,
    }
}

impl PushProvider for WebPushProvider {
    fn name(&self) -> &'static str {
        "webpush"
    }

    fn deliver<'a>(&'a self, job: &'a PushJob) -> BoxFuture<'a, PushOutcome> {
        Box::pin(self.send(job))
    }
}

/// Loads the VAPID key from `data_dir`, or makes and stores a new one.
///
/// # Errors
/// When the file exists but is not a key, or cannot be written.
pub fn load_or_create_vapid(data_dir: &Path, subject: &str) -> anyhow::Result<WebPush> {
    let path = data_dir.join(VAPID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => WebPush::from_secret_b64(&text, subject)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let web = WebPush::generate(subject);
            write_private(&path, &web.secret_b64())
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            info!(path = %path.display(), "made a new VAPID key pair");
            Ok(web)
        }
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Sends jobs from `jobs` through `provider` until `shutdown` flips;
/// subscriptions the provider reports gone are removed from `store`.
pub async fn run_sender(
    provider: Arc<dyn PushProvider>,
    store: ChatStore,
    mut jobs: mpsc::Receiver<PushJob>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(j) => j,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let provider = Arc::clone(&provider);
        let store = store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = provider.deliver(&job).await;
            match outcome {
                PushOutcome::Accepted => {
                    debug!(login = %job.login, device = %job.device.0, "push accepted");
                }
                PushOutcome::Gone => {
                    info!(login = %job.login, device = %job.device.0, "push subscription gone; removed");
                    if let Err(e) = store.push_forget_endpoint(&job.subscription.endpoint).await {
                        warn!(cause = %e, "cannot remove a push subscription");
                    }
                }
                PushOutcome::Failed(why) => {
                    warn!(provider = provider.name(), login = %job.login, %why, "push not delivered");
                }
            }
        });
    }
}

/// Turns push on for `chat`: VAPID key, sink, sender task. Returns the
/// VAPID public key (base64url) to serve.
///
/// # Errors
/// When the VAPID key cannot be loaded or made.
pub fn start(
    chat: &crate::chat::Chat,
    data_dir: &Path,
    settings: &PushSettings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let web = load_or_create_vapid(data_dir, &settings.subject)?;
    let public = web.public_b64();
    let provider: Arc<dyn PushProvider> = Arc::new(WebPushProvider::new(web, settings.allow_http));
    let (tx, rx) = mpsc::channel(QUEUE);
    chat.service().set_push_sink(tx);
    tokio::spawn(run_sender(
        provider,
        chat.service().store().clone(),
        rx,
        shutdown,
    ));
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridges::push::{Notice, Subscription};
    use bridges::{ConversationId, DeviceId, Login, Seq, Timestamp};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Answers `Gone` for endpoints ending in `/gone`, counts sends, and
    /// tracks the most sends it saw in flight at once.
    struct Fake {
        sent: AtomicUsize,
        in_flight: AtomicUsize,
        peak: AtomicUsize,
    }

    impl PushProvider for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn deliver<'a>(&'a self, job: &'a PushJob) -> BoxFuture<'a, PushOutcome> {
            Box::pin(async move {
                let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                self.peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.sent.fetch_add(1, Ordering::SeqCst);
                if job.subscription.endpoint.ends_with("/gone") {
                    PushOutcome::Gone
                } else {
                    PushOutcome::Accepted
                }
            })
        }
    }

    fn sub(endpoint: &str) -> Subscription {
        let key = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        Subscription::parse(endpoint, key, "BTBZMqHH6r4Tts7J_aSIgg").expect("valid")
    }

    fn job(login: &Login, device: &str, endpoint: &str) -> PushJob {
        PushJob {
            login: login.clone(),
            device: DeviceId(device.into()),
            subscription: sub(endpoint),
            notice: Notice {
                conversation: ConversationId::parse("dm:alice+bob").expect("id"),
                seq: Seq(1),
                sender: Login::parse("alice").expect("login"),
                preview: None,
            },
        }
    }

    #[tokio::test]
    async fn gone_subscriptions_are_removed_and_sends_are_bounded() {
        let store = ChatStore::open("sqlite::memory:").await.expect("store");
        let bob = Login::parse("bob").expect("login");
        for (dev, ep) in [
            ("laptop", "https://p.example/ok"),
            ("phone", "https://p.example/gone"),
        ] {
            store
                .push_subscribe(&bob, &DeviceId(dev.into()), &sub(ep), Timestamp(1))
                .await
                .expect("subscribe");
        }
        let fake = Arc::new(Fake {
            sent: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (_stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run_sender(
            Arc::clone(&fake) as Arc<dyn PushProvider>,
            store.clone(),
            rx,
            shutdown,
        ));
        let total = 3 * MAX_IN_FLIGHT;
        for i in 0..total {
            let ep = if i == 0 {
                "https://p.example/gone"
            } else {
                "https://p.example/ok"
            };
            tx.send(job(&bob, "x", ep)).await.expect("queued");
        }
        drop(tx);
        task.await.expect("sender ends when the queue closes");
        // the spawned sends finish after the loop; wait for them by count
        while fake.sent.load(Ordering::SeqCst) < total {
            tokio::task::yield_now().await;
        }
        while store.push_subscriptions(&bob).await.expect("read").len() > 1 {
            tokio::task::yield_now().await;
        }
        let left = store.push_subscriptions(&bob).await.expect("read");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, DeviceId("laptop".into()));
        assert!(fake.peak.load(Ordering::SeqCst) <= MAX_IN_FLIGHT);
    }

    #[test]
    fn only_public_https_endpoints_without_allow_http() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/x",
            "https://updates.push.services.mozilla.com/wpush/v2/x",
            "https://8.8.8.8/x",
        ] {
            assert!(public_https(ok), "{ok}");
        }
        for bad in [
            "http://fcm.googleapis.com/x",
            "https://localhost/x",
            "https://127.0.0.1:8443/x",
            "https://10.1.2.3/x",
            "https://192.168.0.1/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "not a url",
        ] {
            assert!(!public_https(bad), "{bad}");
        }
    }

    #[test]
    fn vapid_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = load_or_create_vapid(dir.path(), "mailto:a@b.c").expect("made");
        let b = load_or_create_vapid(dir.path(), "mailto:a@b.c").expect("loaded");
        assert_eq!(a.public_b64(), b.public_b64());
        std::fs::write(dir.path().join(VAPID_FILE), "not a key").expect("write");
        assert!(load_or_create_vapid(dir.path(), "mailto:a@b.c").is_err());
    }
}
