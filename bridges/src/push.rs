//! Web Push, sans-IO: subscriptions, the notification payload, message
//! encryption (RFC 8291, `aes128gcm` of RFC 8188) and VAPID (RFC 8292).
//!
//! Nothing here sends: [`WebPush::request`] turns one job into the HTTP
//! request (endpoint, headers, body) a shell POSTs (RFC 8030). Randomness
//! (the per-message key pair and salt) comes in through
//! [`WebPush::request_with`] so tests can pin it.
//!
//! Pure Rust (RustCrypto) rather than the `web-push` crate: its `ece`
//! dependency links OpenSSL unconditionally.

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes128Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use serde::Serialize;
use sha2::Sha256;

use crate::error::{ChatError, Result};
use crate::model::{ConversationId, DeviceId, Login, Seq};

/// Longest accepted push endpoint URL.
pub const MAX_ENDPOINT: usize = 1024;
/// Record size announced in the `aes128gcm` header; one record per message.
const RECORD_SIZE: u32 = 4096;
/// Longest preview text put into a payload, in characters.
pub const MAX_PREVIEW_CHARS: usize = 100;
/// How long a push service keeps an undelivered notification (`TTL`).
pub const DEFAULT_TTL_SECS: u32 = 24 * 3600;
/// Lifetime of a VAPID JWT (RFC 8292 allows at most 24 hours).
const JWT_LIFETIME_SECS: i64 = 12 * 3600;

/// One browser's push subscription (`PushSubscription.toJSON()`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The push service URL to POST to.
    pub endpoint: String,
    /// The user agent's P-256 public key (65 bytes, uncompressed).
    pub p256dh: Vec<u8>,
    /// The 16-byte authentication secret.
    pub auth: Vec<u8>,
}

impl Subscription {
    /// Checks the three fields as a client sends them (keys base64url).
    ///
    /// # Errors
    /// `invalid` when the endpoint is not an http(s) URL or a key is malformed.
    pub fn parse(endpoint: &str, p256dh: &str, auth: &str) -> Result<Self> {
        let ok_scheme = endpoint.starts_with("https://") || endpoint.starts_with("http://");
        if !ok_scheme
            || endpoint.len() > MAX_ENDPOINT
            || endpoint
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(ChatError::invalid(
                "endpoint",
                "an http(s) URL of at most 1024 bytes",
            ));
        }
        let p256dh = decode_b64(p256dh)
            .filter(|k| PublicKey::from_sec1_bytes(k).is_ok() && k.len() == 65)
            .ok_or_else(|| ChatError::invalid("p256dh", "an uncompressed P-256 key, base64url"))?;
        let auth = decode_b64(auth)
            .filter(|a| a.len() == 16)
            .ok_or_else(|| ChatError::invalid("auth", "16 bytes, base64url"))?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            p256dh,
            auth,
        })
    }

    /// The user agent key, base64url (as stored).
    pub fn p256dh_b64(&self) -> String {
        B64.encode(&self.p256dh)
    }

    /// The auth secret, base64url (as stored).
    pub fn auth_b64(&self) -> String {
        B64.encode(&self.auth)
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    // Browsers give base64url; some libraries pad it.
    B64.decode(s.trim_end_matches('=')).ok()
}

/// What the notification says; kept small (push services cap at ~4 KiB).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The conversation with the new message.
    pub conversation: ConversationId,
    /// Its seq, so the client can fetch it.
    pub seq: Seq,
    /// Who sent it.
    pub sender: Login,
    /// The start of the text, only when the recipient allowed previews.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// One notification to deliver to one subscribed device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushJob {
    /// The recipient.
    pub login: Login,
    /// Their subscribed device.
    pub device: DeviceId,
    /// Where and how to encrypt.
    pub subscription: Subscription,
    /// What to say.
    pub notice: Notice,
}

/// A ready HTTP request for a push service (RFC 8030 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    /// POST target.
    pub endpoint: String,
    /// Header name/value pairs.
    pub headers: Vec<(&'static str, String)>,
    /// The `aes128gcm` body.
    pub body: Vec<u8>,
}

/// The application server's VAPID identity and the request builder.
#[derive(Clone)]
pub struct WebPush {
    key: SigningKey,
    public: Vec<u8>,
    subject: String,
}

impl std::fmt::Debug for WebPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPush")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A fresh P-256 secret key from the OS random source.
fn random_secret() -> SecretKey {
    loop {
        // Rejection sampling: almost every 32-byte string is a valid scalar.
        if let Ok(k) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
            return k;
        }
    }
}

impl WebPush {
    /// A new VAPID key pair; `subject` is the `sub` claim (`mailto:` or `https:`).
    pub fn generate(subject: &str) -> Self {
        Self::from_secret(random_secret(), subject)
    }

    /// Restores a key from [`WebPush::secret_b64`].
    ///
    /// # Errors
    /// `invalid` when the text is not a P-256 private scalar.
    pub fn from_secret_b64(secret: &str, subject: &str) -> Result<Self> {
        let sk = decode_b64(secret.trim())
            .and_then(|b| SecretKey::from_slice(&b).ok())
            .ok_or_else(|| ChatError::invalid("vapid key", "a P-256 private key, base64url"))?;
        Ok(Self::from_secret(sk, subject))
    }

    fn from_secret(sk: SecretKey, subject: &str) -> Self {
        let public = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
        Self {
            key: SigningKey::from(sk),
            public,
            subject: subject.to_owned(),
        }
    }

    /// The private scalar, base64url, for keeping in the data dir.
    pub fn secret_b64(&self) -> String {
        B64.encode(self.key.to_bytes())
    }

    /// The public key (uncompressed point, base64url): the browser's
    /// `applicationServerKey`.
    pub fn public_b64(&self) -> String {
        B64.encode(&self.public)
    }

    /// `Authorization: vapid t=<jwt>, k=<key>` for `endpoint` at `now_secs`.
    pub fn authorization(&self, endpoint: &str, now_secs: i64) -> String {
        let header = B64.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": origin(endpoint),
            "exp": now_secs + JWT_LIFETIME_SECS,
            "sub": self.subject,
        });
        let claims = B64.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let sig: Signature = self.key.sign(signing_input.as_bytes());
        format!(
            "vapid t={signing_input}.{}, k={}",
            B64.encode(sig.to_bytes()),
            self.public_b64()
        )
    }

    /// The request for `job` at `now_secs`, with fresh randomness.
    ///
    /// # Errors
    /// `internal` only if the payload cannot be serialized or encrypted.
    pub fn request(&self, job: &PushJob, now_secs: i64) -> Result<PushRequest> {
        self.request_with(job, now_secs, random_secret(), rand::random())
    }

    /// Like [`WebPush::request`] with the ephemeral key and salt given.
    ///
    /// # Errors
    /// As [`WebPush::request`].
    pub fn request_with(
        &self,
        job: &PushJob,
        now_secs: i64,
        ephemeral: SecretKey,
        salt: [u8; 16],
    ) -> Result<PushRequest> {
        let plain = serde_json::to_vec(&job.notice)
            .map_err(|e| ChatError::Push(format!("push payload: {e}")))?;
        let body = encrypt(&job.subscription, &plain, &ephemeral, salt)?;
        Ok(PushRequest {
            endpoint: job.subscription.endpoint.clone(),
            headers: vec![
                (
                    "authorization",
                    self.authorization(&job.subscription.endpoint, now_secs),
                ),
                ("ttl", DEFAULT_TTL_SECS.to_string()),
                ("content-encoding", "aes128gcm".to_owned()),
                ("content-type", "application/octet-stream".to_owned()),
                ("urgency", "high".to_owned()),
            ],
            body,
        })
    }
}

/// `scheme://host[:port]` of a URL: the VAPID audience.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

/// RFC 8291 §3.4 + RFC 8188: one `aes128gcm` record.
fn encrypt(sub: &Subscription, plain: &[u8], eph: &SecretKey, salt: [u8; 16]) -> Result<Vec<u8>> {
    let bad = |what: &str| ChatError::Push(format!("push encryption: {what}"));
    let ua_public = PublicKey::from_sec1_bytes(&sub.p256dh).map_err(|_| bad("p256dh"))?;
    let as_public = eph.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), ua_public.as_affine());

    // IKM = HKDF(auth, ecdh, "WebPush: info" || 0 || ua_public || as_public)
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(&sub.p256dh);
    key_info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&sub.auth), shared.raw_secret_bytes().as_slice())
        .expand(&key_info, &mut ikm)
        .map_err(|_| bad("ikm"))?;

    let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    hk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| bad("cek"))?;
    hk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| bad("nonce"))?;

    // a single, last record: data then the 0x02 delimiter
    let mut record = plain.to_vec();
    record.push(2);
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| bad("key"))?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            AeadPayload {
                msg: &record,
                aad: b"",
            },
        )
        .map_err(|_| bad("seal"))?;

    let mut out = Vec::with_capacity(16 + 4 + 1 + 65 + sealed.len());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(65);
    out.extend_from_slice(as_public.as_bytes());
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The preview of a text: its first [`MAX_PREVIEW_CHARS`] characters.
pub fn preview_of(text: &str) -> String {
    text.chars().take(MAX_PREVIEW_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    fn sub_with(ua: &SecretKey, auth: [u8; 16]) -> Subscription {
        Subscription::parse(
            "https://push.example.net/p/abc?x=1",
            &B64.encode(ua.public_key().to_encoded_point(false).as_bytes()),
            &B64.encode(auth),
        )
        .expect("valid subscription")
    }

    #[test]
    fn subscriptions_are_checked() {
        let ua = random_secret();
        let k = B64.encode(ua.public_key().to_encoded_point(false).as_bytes());
        let a = B64.encode([7u8; 16]);
        assert!(Subscription::parse("https://x/y", &k, &a).is_ok());
        assert!(Subscription::parse("ftp://x/y", &k, &a).is_err());
        assert!(Subscription::parse("https://x/ y", &k, &a).is_err());
        assert!(Subscription::parse("https://x/y", &a, &a).is_err());
        assert!(Subscription::parse("https://x/y", &k, &k).is_err());
        assert!(Subscription::parse("https://x/y", "!!", &a).is_err());
    }

    #[test]
    fn vapid_jwt_verifies_with_the_public_key() {
        let wp = WebPush::generate("mailto:ops@example.net");
        let again = WebPush::from_secret_b64(&wp.secret_b64(), "mailto:x").expect("restores");
        assert_eq!(again.public_b64(), wp.public_b64());
        let h = wp.authorization("https://push.example.net:8443/p/abc", 1_000);
        let rest = h.strip_prefix("vapid t=").expect("scheme");
        let (jwt, k) = rest.split_once(", k=").expect("k");
        assert_eq!(k, wp.public_b64());
        let (input, sig) = jwt.rsplit_once('.').expect("sig");
        let vk = VerifyingKey::from_sec1_bytes(&B64.decode(k).expect("b64")).expect("key");
        let sig = Signature::from_slice(&B64.decode(sig).expect("b64")).expect("sig");
        vk.verify(input.as_bytes(), &sig).expect("verifies");
        let claims = B64
            .decode(input.split('.').nth(1).expect("claims"))
            .expect("b64");
        let claims: serde_json::Value = serde_json::from_slice(&claims).expect("json");
        assert_eq!(claims["aud"], "https://push.example.net:8443");
        assert_eq!(claims["exp"], 1_000 + JWT_LIFETIME_SECS);
        assert_eq!(claims["sub"], "mailto:ops@example.net");
    }

    /// RFC 8291 §5 example: fixed keys and salt give the published body.
    #[test]
    fn rfc8291_example_vector() {
        let d = |s: &str| B64.decode(s).expect("b64");
        let as_secret =
            SecretKey::from_slice(&d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).expect("key");
        let sub = Subscription::parse(
            "https://push.example.net/",
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .expect("valid");
        let salt: [u8; 16] = d("DGv6ra1nlYgDCS1FRnbzlw").try_into().expect("16 bytes");
        let body = encrypt(
            &sub,
            b"When I grow up, I want to be a watermelon",
            &as_secret,
            salt,
        )
        .expect("encrypts");
        assert_eq!(
            B64.encode(body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn request_carries_headers_and_a_body_per_rfc8188() {
        let wp = WebPush::generate("mailto:a@b.c");
        let ua = random_secret();
        let job = PushJob {
            login: Login::parse("bob").expect("login"),
            device: DeviceId("d1".into()),
            subscription: sub_with(&ua, [1; 16]),
            notice: Notice {
                conversation: ConversationId::parse("dm:alice+bob").expect("conv"),
                seq: Seq(3),
                sender: Login::parse("alice").expect("login"),
                preview: None,
            },
        };
        let req = wp.request(&job, 5).expect("request");
        assert_eq!(req.endpoint, job.subscription.endpoint);
        let names: Vec<_> = req.headers.iter().map(|(n, _)| *n).collect();
        for n in ["authorization", "ttl", "content-encoding"] {
            assert!(names.contains(&n), "{n} missing");
        }
        assert_eq!(&req.body[16..20], &RECORD_SIZE.to_be_bytes());
        assert_eq!(req.body[20], 65);
        // header + JSON + delimiter + tag
        let json = serde_json::to_vec(&job.notice).expect("json");
        assert_eq!(req.body.len(), 86 + json.len() + 1 + 16);
    }
}
