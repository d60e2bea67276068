//! Outbound registration of one trunk (RFC 3261 section 10), as a sans-IO client.
//!
//! This file owns the REGISTER life cycle for one address-of-record: building
//! the request (constant Call-ID and From tag, increasing CSeq, Contact with
//! `expires`), answering a digest challenge once per attempt (a `stale=true`
//! challenge is answered again without counting as a failure), reading the
//! granted expiry, scheduling the refresh at about 80 % of it, backing off
//! with jitter after failures, retrying with `Min-Expires` after 423, and the
//! final un-REGISTER on shutdown.
//!
//! It does not touch the transaction layer: [`Registration::poll_transmit`]
//! hands out requests to send, and the glue reports what came back through
//! [`Registration::handle_response`] or
//! [`Registration::handle_transaction_timeout`]. Time only enters as `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::auth::{Challenge, ChallengeKind, Credentials, DigestClient};
use crate::message::{Method, NameAddr, Request, Response, Uri, names};

/// Settings for one registration.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// Address of record, used in From and To (`sip:trunkuser@pbx.example.com`).
    pub aor: Uri,
    /// Request-URI: the registrar domain (`sip:pbx.example.com`).
    pub registrar: Uri,
    /// Where the registrar should send calls for the AOR.
    pub contact: Uri,
    /// `Via` sent-by and transport, e.g. `("UDP", "192.0.2.1:5060")`; the branch is added by the transaction layer.
    pub via: (String, String),
    /// Digest credentials, if the registrar challenges.
    pub credentials: Option<Credentials>,
    /// Requested expiry in seconds.
    pub expires: u32,
    /// Fraction of the granted expiry after which we refresh.
    pub refresh_ratio: f64,
    /// First retry delay after a failure.
    pub backoff_min: Duration,
    /// Upper bound of the retry delay.
    pub backoff_max: Duration,
    /// Relative jitter applied to retry delays (0.2 = plus or minus 20 %).
    pub jitter: f64,
    /// `User-Agent` header value, if any.
    pub user_agent: Option<String>,
}

impl RegistrationConfig {
    /// Defaults: 3600 s requested, refresh at 80 %, back-off 2 s doubling to 300 s, 20 % jitter.
    pub fn new(aor: Uri, registrar: Uri, contact: Uri, via: (String, String)) -> Self {
        Self {
            aor,
            registrar,
            contact,
            via,
            credentials: None,
            expires: 3600,
            refresh_ratio: 0.8,
            backoff_min: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            jitter: 0.2,
            user_agent: None,
        }
    }
}

/// Where the registration stands, for metrics and trunk up/down marking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    /// Not started, or un-registered.
    Idle,
    /// A REGISTER is in flight and we were not registered before.
    Registering,
    /// The registrar accepted us; `expires_at` is when the binding lapses.
    Registered {
        /// When the binding lapses if not refreshed.
        expires_at: Instant,
    },
    /// The last attempt failed; the next attempt is scheduled.
    Failed,
    /// The un-REGISTER is in flight.
    Unregistering,
}

/// What happened, for the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The registrar granted a binding for `expires` seconds.
    Registered {
        /// Granted expiry in seconds.
        expires: u32,
    },
    /// An attempt failed; `status` is absent on timeouts.
    Failed {
        /// Final status code, if a response came.
        status: Option<u16>,
        /// Reason phrase or a description of the failure.
        reason: String,
        /// When the next attempt will be made.
        retry_at: Instant,
    },
    /// The binding was removed (or shutdown gave up waiting).
    Unregistered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Register,
    Unregister,
}

/// The REGISTER currently awaiting its final response.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    cseq: u32,
    purpose: Purpose,
    /// This request answered a challenge; a further non-stale challenge means rejection.
    answered_challenge: bool,
    /// Stale re-challenges answered in this attempt; bounded so a broken server cannot loop us.
    stale_retries: u8,
}

/// Upper bound on `stale=true` rounds per attempt.
const MAX_STALE_RETRIES: u8 = 3;

/// Which header carries the credentials: `Authorization` after 401, `Proxy-Authorization` after 407.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthHeader {
    Www,
    Proxy,
}

/// The sans-IO registration client for one AOR.
///
/// Verbs: [`handle_response`](Self::handle_response),
/// [`handle_transaction_timeout`](Self::handle_transaction_timeout),
/// [`handle_timeout`](Self::handle_timeout), [`unregister`](Self::unregister);
/// then drain [`poll_transmit`](Self::poll_transmit),
/// [`poll_event`](Self::poll_event) and read [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Registration {
    config: RegistrationConfig,
    rng: StdRng,
    call_id: String,
    from_tag: String,
    /// Last CSeq used; every new REGISTER (refresh, retry, auth answer) increments it.
    cseq: u32,
    /// Expiry we ask for; raised by 423 Min-Expires.
    expires: u32,
    digest: Option<DigestClient>,
    auth_header: AuthHeader,
    state: RegistrationState,
    in_flight: Option<InFlight>,
    /// When to send the next REGISTER (initial, refresh or retry).
    next_attempt: Option<Instant>,
    /// Consecutive failures, driving the back-off.
    failures: u32,
    transmit: VecDeque<Request>,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    /// A registration that sends its first REGISTER at `now`; `rng_seed` makes tags and jitter reproducible.
    pub fn new(config: RegistrationConfig, now: Instant, rng_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let call_id = format!("{}@{}", random_hex(&mut rng, 12), config.contact.host);
        let from_tag = random_hex(&mut rng, 6);
        let digest = config.credentials.clone().map(DigestClient::new);
        Self {
            expires: config.expires,
            config,
            rng,
            call_id,
            from_tag,
            cseq: 0,
            digest,
            auth_header: AuthHeader::Www,
            state: RegistrationState::Idle,
            in_flight: None,
            next_attempt: Some(now),
            failures: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> RegistrationState {
        self.state
    }

    /// The Call-ID shared by every REGISTER of this binding.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Whether a response or timeout belongs to this registration (Call-ID match).
    pub fn accepts(&self, response: &Response) -> bool {
        response.headers.call_id().is_ok_and(|c| c == self.call_id)
    }

    /// Fires the scheduled REGISTER when its time has come; spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some(at) = self.next_attempt
            && now >= at
        {
            self.next_attempt = None;
            self.send(Purpose::Register, false, 0);
        }
    }

    /// Consumes a response to one of our REGISTERs; other responses are ignored.
    pub fn handle_response(&mut self, now: Instant, response: &Response) {
        let Some(flight) = self.in_flight else {
            return;
        };
        if !self.accepts(response) {
            return;
        }
        match response.headers.cseq() {
            Ok(c) if c.seq == flight.cseq && c.method == Method::Register => {}
            _ => return,
        }
        let status = response.status.0;
        if status < 200 {
            return;
        }
        self.in_flight = None;
        match status {
            200..=299 => self.on_success(now, flight, response),
            401 | 407 => self.on_challenge(now, flight, response),
            423 => {
                let min = response
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min) if min > self.expires && flight.purpose == Purpose::Register => {
                        self.expires = min;
                        self.send(Purpose::Register, false, 0);
                    }
                    _ => self.fail(now, flight, Some(status), &response.reason, None),
                }
            }
            _ => {
                let retry_after = response
                    .headers
                    .get("Retry-After")
                    .and_then(|v| v.split(';').next()?.trim().parse::<u64>().ok())
                    // A hostile value must not overflow the clock; a day is plenty.
                    .map(|s| Duration::from_secs(s.min(86_400)));
                self.fail(now, flight, Some(status), &response.reason, retry_after);
            }
        }
    }

    /// The transaction carrying our REGISTER timed out or hit a transport error.
    pub fn handle_transaction_timeout(&mut self, now: Instant) {
        if let Some(flight) = self.in_flight.take() {
            self.fail(now, flight, None, "transaction timeout", None);
        }
    }

    /// Sends the next REGISTER now instead of at the refresh or back-off
    /// time, and forgets earlier failures: the registrar was seen coming
    /// back (it answers OPTIONS again) and has probably lost the binding.
    /// A no-op while a REGISTER is in flight or after [`unregister`](Self::unregister).
    pub fn refresh_now(&mut self, now: Instant) {
        if self.in_flight.is_some() || self.next_attempt.is_none() {
            return;
        }
        self.failures = 0;
        self.next_attempt = Some(now);
        self.handle_timeout(now);
    }

    /// Removes the binding (expires=0) for shutdown; ends in [`RegistrationEvent::Unregistered`].
    pub fn unregister(&mut self, _now: Instant) {
        self.next_attempt = None;
        match self.state {
            RegistrationState::Idle | RegistrationState::Unregistering => {}
            RegistrationState::Failed if self.in_flight.is_none() => {
                self.state = RegistrationState::Idle;
                self.events.push_back(RegistrationEvent::Unregistered);
            }
            _ => {
                // A REGISTER still in flight is superseded: its response will not match the new CSeq.
                self.state = RegistrationState::Unregistering;
                self.send(Purpose::Unregister, false, 0);
            }
        }
    }

    /// The next request to hand to the transaction layer.
    pub fn poll_transmit(&mut self) -> Option<Request> {
        self.transmit.pop_front()
    }

    /// The next event for the gateway.
    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight.is_some() {
            // The transaction layer reports timeouts; nothing of ours runs meanwhile.
            return None;
        }
        self.next_attempt
    }

    fn on_success(&mut self, now: Instant, flight: InFlight, response: &Response) {
        self.failures = 0;
        if flight.purpose == Purpose::Unregister {
            self.state = RegistrationState::Idle;
            self.events.push_back(RegistrationEvent::Unregistered);
            return;
        }
        let granted = self.granted_expiry(response).unwrap_or(self.expires);
        let expires_at = now + Duration::from_secs(u64::from(granted));
        // Clamped so a bad config value cannot panic `from_secs_f64` or refresh after expiry.
        let ratio = if self.config.refresh_ratio.is_finite() {
            self.config.refresh_ratio.clamp(0.1, 0.95)
        } else {
            0.8
        };
        let refresh = Duration::from_secs_f64(f64::from(granted) * ratio);
        self.state = RegistrationState::Registered { expires_at };
        self.next_attempt = Some(now + refresh.max(Duration::from_secs(1)));
        self.events
            .push_back(RegistrationEvent::Registered { expires: granted });
    }

    fn on_challenge(&mut self, now: Instant, flight: InFlight, response: &Response) {
        let (header, kind) = if response.status.0 == 407 {
            ("Proxy-Authenticate", AuthHeader::Proxy)
        } else {
            ("WWW-Authenticate", AuthHeader::Www)
        };
        let challenge = Challenge::select(response.headers.get_all(header));
        let (Some(digest), Some(challenge)) = (self.digest.as_mut(), challenge) else {
            let why = if self.digest.is_none() {
                "challenged but no credentials configured"
            } else {
                "unusable challenge"
            };
            return self.fail(now, flight, Some(response.status.0), why, None);
        };
        self.auth_header = kind;
        match digest.accept_challenge(challenge) {
            ChallengeKind::Stale if flight.stale_retries < MAX_STALE_RETRIES => {
                self.send(flight.purpose, true, flight.stale_retries + 1);
            }
            ChallengeKind::Fresh if !flight.answered_challenge => {
                self.send(flight.purpose, true, flight.stale_retries);
            }
            _ => self.fail(
                now,
                flight,
                Some(response.status.0),
                "credentials rejected",
                None,
            ),
        }
    }

    fn fail(
        &mut self,
        now: Instant,
        flight: InFlight,
        status: Option<u16>,
        reason: &str,
        retry_after: Option<Duration>,
    ) {
        if flight.purpose == Purpose::Unregister {
            // Shutdown must not hang on a dead registrar.
            self.state = RegistrationState::Idle;
            self.events.push_back(RegistrationEvent::Unregistered);
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = self.backoff().max(retry_after.unwrap_or_default());
        let retry_at = now + delay;
        self.state = RegistrationState::Failed;
        self.next_attempt = Some(retry_at);
        self.events.push_back(RegistrationEvent::Failed {
            status,
            reason: reason.to_owned(),
            retry_at,
        });
    }

    /// `backoff_min * 2^(failures-1)` capped at `backoff_max`, then jittered.
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(20);
        let base = self
            .config
            .backoff_min
            .saturating_mul(1 << exp)
            .min(self.config.backoff_max);
        let j = self.config.jitter.clamp(0.0, 1.0);
        let factor = if j > 0.0 {
            self.rng.random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        base.mul_f64(factor)
    }

    /// Granted expiry: our Contact's `expires` param, else the Expires header.
    fn granted_expiry(&self, response: &Response) -> Option<u32> {
        let ours = &self.config.contact;
        let from_contact = response.headers.contact().ok().and_then(|contacts| {
            contacts
                .iter()
                .find(|c| {
                    c.uri.host.eq_ignore_ascii_case(&ours.host)
                        && c.uri.port == ours.port
                        && c.uri.user == ours.user
                })
                .and_then(|c| c.param("expires").flatten()?.trim().parse().ok())
        });
        from_contact.or_else(|| response.headers.expires().ok().flatten())
    }

    fn send(&mut self, purpose: Purpose, answered_challenge: bool, stale_retries: u8) {
        self.cseq += 1;
        let expires = match purpose {
            Purpose::Register => self.expires,
            Purpose::Unregister => 0,
        };
        if self.state != RegistrationState::Unregistering
            && !matches!(self.state, RegistrationState::Registered { .. })
        {
            self.state = RegistrationState::Registering;
        }
        let mut from = NameAddr::new(self.config.aor.clone());
        from.tag = Some(self.from_tag.clone());
        let mut contact = NameAddr::new(self.config.contact.clone());
        contact
            .params
            .push(("expires".into(), Some(expires.to_string())));
        let (via_transport, sent_by) = &self.config.via;
        let mut req = Request::new(Method::Register, self.config.registrar.clone())
            .with_header(
                names::VIA,
                format!("SIP/2.0/{via_transport} {sent_by};rport"),
            )
            .with_header(names::MAX_FORWARDS, "70")
            .with_header(names::FROM, from.to_string())
            .with_header(
                names::TO,
                NameAddr::new(self.config.aor.clone()).to_string(),
            )
            .with_header(names::CALL_ID, self.call_id.clone())
            .with_header(names::CSEQ, format!("{} REGISTER", self.cseq))
            .with_header(names::CONTACT, contact.to_string())
            .with_header(names::EXPIRES, expires.to_string());
        if let Some(ua) = &self.config.user_agent {
            req = req.with_header("User-Agent", ua.clone());
        }
        // Once challenged, every later REGISTER carries credentials for the cached nonce,
        // which saves a round trip per refresh with most registrars.
        if let Some(digest) = self.digest.as_mut()
            && digest.challenge().is_some()
        {
            let uri = self.config.registrar.to_string();
            if let Ok(auth) = digest.authorize("REGISTER", &uri, b"", &mut self.rng) {
                let name = match self.auth_header {
                    AuthHeader::Www => "Authorization",
                    AuthHeader::Proxy => "Proxy-Authorization",
                };
                req = req.with_header(name, auth.to_string());
            }
        }
        self.in_flight = Some(InFlight {
            cseq: self.cseq,
            purpose,
            answered_challenge,
            stale_retries,
        });
        self.transmit.push_back(req);
    }
}

fn random_hex(rng: &mut dyn RngCore, bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rng.fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authorization;

    fn uri(s: &str) -> Uri {
        Uri::parse(s).expect("test uri")
    }

    fn config() -> RegistrationConfig {
        let mut c = RegistrationConfig::new(
            uri("sip:trunk@pbx.example.com"),
            uri("sip:pbx.example.com"),
            uri("sip:trunk@192.0.2.1:5060"),
            ("UDP".into(), "192.0.2.1:5060".into()),
        );
        c.credentials = Some(Credentials::new("trunk", "secret"));
        c
    }

    /// The registrar side of a test: answers `req` with `status` and extra headers.
    fn reply(req: &Request, status: u16, extra: &[(&str, &str)]) -> Response {
        let mut r = Response::from_request(req, status, "Test").with_to_tag("srv");
        for (n, v) in extra {
            r = r.with_header(n, *v);
        }
        r
    }

    fn challenge(nonce: &str, stale: bool) -> String {
        format!(
            r#"Digest realm="pbx", nonce="{nonce}", qop="auth", algorithm=MD5{}"#,
            if stale { ", stale=true" } else { "" }
        )
    }

    fn take(reg: &mut Registration) -> Request {
        let req = reg.poll_transmit().expect("a REGISTER to send");
        assert!(reg.poll_transmit().is_none(), "one request at a time");
        req
    }

    fn events(reg: &mut Registration) -> Vec<RegistrationEvent> {
        std::iter::from_fn(|| reg.poll_event()).collect()
    }

    fn cseq(req: &Request) -> u32 {
        req.headers.cseq().expect("cseq").seq
    }

    /// Initial REGISTER is well-formed; 200 schedules the refresh at 80 % of the granted expiry.
    #[test]
    fn refresh_at_80_percent_of_granted_expiry() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0, 1);
        assert_eq!(reg.poll_timeout(), Some(t0));
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        assert_eq!(r1.method, Method::Register);
        assert_eq!(r1.uri.to_string(), "sip:pbx.example.com");
        assert_eq!(r1.headers.get("Expires"), Some("3600"));
        assert!(r1.headers.from().expect("from").tag.is_some());
        assert!(r1.headers.get("Authorization").is_none());
        let contact = &r1.headers.contact().expect("contact")[0];
        assert_eq!(contact.param("expires"), Some(Some("3600")));
        assert_eq!(reg.state(), RegistrationState::Registering);

        // Registrar grants less than asked, in the Contact parameter.
        let ok = reply(
            &r1,
            200,
            &[
                ("Contact", "<sip:trunk@192.0.2.1:5060>;expires=600"),
                ("Expires", "900"),
            ],
        );
        reg.handle_response(t0, &ok);
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 600 }]
        );
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(480)));
        reg.handle_timeout(t0 + Duration::from_secs(479));
        assert!(reg.poll_transmit().is_none(), "not before 80 %");
        reg.handle_timeout(t0 + Duration::from_secs(480));
        let r2 = take(&mut reg);
        assert_eq!(
            r2.headers.call_id().ok(),
            r1.headers.call_id().ok(),
            "Call-ID constant"
        );
        assert_eq!(
            r2.headers.from().expect("from").tag,
            r1.headers.from().expect("from").tag
        );
        assert_eq!(cseq(&r2), cseq(&r1) + 1, "CSeq increases");
        assert!(matches!(reg.state(), RegistrationState::Registered { .. }));

        // Expires header is used when the Contact carries no expires.
        let t1 = t0 + Duration::from_secs(480);
        reg.handle_response(t1, &reply(&r2, 200, &[("Expires", "100")]));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 100 }]
        );
        assert_eq!(reg.poll_timeout(), Some(t1 + Duration::from_secs(80)));
    }

    /// `refresh_now` skips a long back-off (the registrar is back), does
    /// nothing while a REGISTER is in flight, and nothing after unregister.
    #[test]
    fn refresh_now_skips_the_back_off() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0, 3);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        // In flight: nothing more is sent.
        reg.refresh_now(t0);
        assert!(reg.poll_transmit().is_none());
        // Several timeouts push the retry far out.
        reg.handle_transaction_timeout(t0);
        let mut now = t0;
        for _ in 0..5 {
            now = reg.poll_timeout().expect("retry scheduled");
            reg.handle_timeout(now);
            take(&mut reg);
            reg.handle_transaction_timeout(now);
        }
        let retry = reg.poll_timeout().expect("retry scheduled");
        assert!(retry - now >= Duration::from_secs(40), "{:?}", retry - now);
        events(&mut reg);
        let back = now + Duration::from_secs(1);
        reg.refresh_now(back);
        let r2 = take(&mut reg);
        assert!(cseq(&r2) > cseq(&r1));
        assert_eq!(r2.headers.call_id().ok(), r1.headers.call_id().ok());
        // A failure right after starts the back-off from its first step again.
        reg.handle_transaction_timeout(back);
        let next = reg.poll_timeout().expect("retry scheduled");
        assert!(
            next - back <= Duration::from_millis(2400),
            "{:?}",
            next - back
        );
        // After unregister nothing is resent.
        reg.unregister(back);
        events(&mut reg);
        reg.refresh_now(back);
        assert!(reg.poll_transmit().is_none());
    }

    /// Failures back off 2, 4, 8 ... capped at 300 s, each within plus or minus 20 %.
    #[test]
    fn backoff_sequence_with_jitter() {
        let mut now = Instant::now();
        let mut reg = Registration::new(config(), now, 2);
        let mut delays = Vec::new();
        for _ in 0..10 {
            reg.handle_timeout(now);
            let _req = take(&mut reg);
            reg.handle_transaction_timeout(now);
            let ev = events(&mut reg);
            let [
                RegistrationEvent::Failed {
                    status: None,
                    retry_at,
                    ..
                },
            ] = ev.as_slice()
            else {
                panic!("expected one Failed event, got {ev:?}");
            };
            assert_eq!(reg.poll_timeout(), Some(*retry_at));
            assert_eq!(reg.state(), RegistrationState::Failed);
            delays.push(retry_at.duration_since(now).as_secs_f64());
            now = *retry_at;
        }
        let nominal = [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0, 300.0];
        for (d, n) in delays.iter().zip(nominal) {
            assert!(
                *d >= n * 0.8 - 1e-9 && *d <= n * 1.2 + 1e-9,
                "delay {d} vs {n}: {delays:?}"
            );
        }
        assert!(
            delays.windows(2).any(|w| (w[1] / w[0] - 2.0).abs() > 1e-6),
            "jittered"
        );

        // Success resets the back-off.
        reg.handle_timeout(now);
        let req = take(&mut reg);
        reg.handle_response(now, &reply(&req, 200, &[]));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 3600 }]
        );
        reg.handle_timeout(now + Duration::from_secs(2880));
        let req = take(&mut reg);
        reg.handle_response(now, &reply(&req, 503, &[]));
        let ev = events(&mut reg);
        let [
            RegistrationEvent::Failed {
                status: Some(503),
                retry_at,
                ..
            },
        ] = ev.as_slice()
        else {
            panic!("expected Failed 503, got {ev:?}");
        };
        let d = retry_at.duration_since(now).as_secs_f64();
        assert!((1.6..=2.4).contains(&d), "back to 2 s, got {d}");
    }

    /// A 401 is answered once; a second 401 after our answer is a failure, not a loop.
    #[test]
    fn challenge_answered_once() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0, 3);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        reg.handle_response(
            t0,
            &reply(&r1, 401, &[("WWW-Authenticate", &challenge("n1", false))]),
        );
        let r2 = take(&mut reg);
        assert!(events(&mut reg).is_empty(), "answering is not a failure");
        assert_eq!(cseq(&r2), cseq(&r1) + 1);
        let auth = Authorization::parse(r2.headers.get("Authorization").expect("credentials"))
            .expect("valid credentials");
        assert_eq!(auth.nonce, "n1");
        assert_eq!(auth.uri, "sip:pbx.example.com");
        assert_eq!(auth.username, "trunk");

        // Same nonce again: the password is wrong.
        reg.handle_response(
            t0,
            &reply(&r2, 401, &[("WWW-Authenticate", &challenge("n1", false))]),
        );
        assert!(reg.poll_transmit().is_none(), "no second answer");
        let ev = events(&mut reg);
        assert!(
            matches!(
                ev.as_slice(),
                [RegistrationEvent::Failed {
                    status: Some(401),
                    ..
                }]
            ),
            "{ev:?}"
        );

        // Servers that mint a new nonce per 401 are caught too.
        let t1 = reg.poll_timeout().expect("retry scheduled");
        reg.handle_timeout(t1);
        let r3 = take(&mut reg);
        assert!(
            r3.headers.get("Authorization").is_some(),
            "cached nonce reused"
        );
        reg.handle_response(
            t1,
            &reply(&r3, 401, &[("WWW-Authenticate", &challenge("n2", false))]),
        );
        let r4 = take(&mut reg);
        reg.handle_response(
            t1,
            &reply(&r4, 401, &[("WWW-Authenticate", &challenge("n3", false))]),
        );
        assert!(reg.poll_transmit().is_none());
        assert!(matches!(
            events(&mut reg).as_slice(),
            [RegistrationEvent::Failed {
                status: Some(401),
                ..
            }]
        ));
    }

    /// stale=true is retried with the new nonce and is not counted as a failure.
    #[test]
    fn stale_nonce_is_retried() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0, 4);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        reg.handle_response(
            t0,
            &reply(&r1, 407, &[("Proxy-Authenticate", &challenge("a", false))]),
        );
        let r2 = take(&mut reg);
        assert!(
            r2.headers.get("Proxy-Authorization").is_some(),
            "407 answered in Proxy-Authorization"
        );
        reg.handle_response(
            t0,
            &reply(&r2, 407, &[("Proxy-Authenticate", &challenge("b", true))]),
        );
        let r3 = take(&mut reg);
        let auth =
            Authorization::parse(r3.headers.get("Proxy-Authorization").expect("credentials"))
                .expect("valid");
        assert_eq!(auth.nonce, "b");
        assert_eq!(
            auth.qop.as_ref().map(|q| q.2),
            Some(1),
            "nc restarts for the new nonce"
        );
        assert!(events(&mut reg).is_empty());
        reg.handle_response(t0, &reply(&r3, 200, &[]));
        assert_eq!(
            events(&mut reg),
            vec![RegistrationEvent::Registered { expires: 3600 }]
        );
    }

    /// Hostile header values neither panic nor push the retry past a day.
    #[test]
    fn hostile_values_are_bounded() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.refresh_ratio = f64::NAN;
        let mut reg = Registration::new(cfg, t0, 8);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        reg.handle_response(
            t0,
            &reply(&r1, 503, &[("Retry-After", "18446744073709551615")]),
        );
        let at = reg.poll_timeout().expect("retry scheduled");
        assert!(at - t0 <= Duration::from_secs(86_400));
        reg.handle_timeout(at);
        let r2 = take(&mut reg);
        reg.handle_response(
            at,
            &reply(
                &r2,
                200,
                &[
                    ("Expires", "4294967295"),
                    ("Contact", "<sip:x@y>;expires=abc"),
                ],
            ),
        );
        assert_eq!(
            events(&mut reg).last(),
            Some(&RegistrationEvent::Registered { expires: u32::MAX })
        );
        assert!(reg.poll_timeout().is_some_and(|t| t > at));
    }

    /// 423 Interval Too Brief: retry at once with Min-Expires.
    #[test]
    fn interval_too_brief_uses_min_expires() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.expires = 60;
        let mut reg = Registration::new(cfg, t0, 5);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        reg.handle_response(t0, &reply(&r1, 423, &[("Min-Expires", "1800")]));
        let r2 = take(&mut reg);
        assert_eq!(r2.headers.get("Expires"), Some("1800"));
        assert!(events(&mut reg).is_empty());
        // A 423 that does not raise the interval would loop: it is a failure.
        reg.handle_response(t0, &reply(&r2, 423, &[("Min-Expires", "1800")]));
        assert!(reg.poll_transmit().is_none());
        assert!(matches!(
            events(&mut reg).as_slice(),
            [RegistrationEvent::Failed {
                status: Some(423),
                ..
            }]
        ));
    }

    /// Unregister sends expires=0 and reports Unregistered; late or foreign responses are ignored.
    #[test]
    fn unregister_on_shutdown() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(), t0, 6);
        reg.handle_timeout(t0);
        let r1 = take(&mut reg);
        let mut foreign = reply(&r1, 200, &[]);
        foreign.headers.set("Call-ID", "other");
        reg.handle_response(t0, &foreign);
        assert!(events(&mut reg).is_empty(), "other Call-ID ignored");
        reg.handle_response(t0, &reply(&r1, 200, &[]));
        events(&mut reg);
        reg.unregister(t0);
        let bye = take(&mut reg);
        assert_eq!(bye.headers.get("Expires"), Some("0"));
        assert_eq!(reg.state(), RegistrationState::Unregistering);
        reg.handle_response(t0, &reply(&r1, 200, &[]));
        assert!(events(&mut reg).is_empty(), "stale CSeq ignored");
        reg.handle_response(t0, &reply(&bye, 200, &[]));
        assert_eq!(events(&mut reg), vec![RegistrationEvent::Unregistered]);
        assert_eq!(reg.state(), RegistrationState::Idle);
        assert_eq!(reg.poll_timeout(), None, "nothing scheduled after shutdown");
    }
}
