//! Chat with companies over SIP MESSAGE (RFC 3428): the shell between the
//! chat's company conversations (`co:<login>+<company name>`) and the
//! companies' trunks.
//!
//! Outbound, [`SipRelay`] is the chat's [`CompanyRelay`]: `admit` asks the
//! dialplan whether the name takes chat before anything is stored; `relay`
//! queues the stored post on its conversation's queue. One task per busy
//! conversation sends its posts one at a time, in seq order, as MESSAGE to
//! `sip:<extension>@<trunk domain>` through the trunk the dialplan names
//! (the same trunk lookup as calls, [`crate::calls::route::trunk_target`]),
//! From `"<display>" <sip:<login>@<gateway>>` so the desk phone can reply.
//! Because a conversation has at most one MESSAGE in flight, a 2xx for seq
//! N means every earlier post was either delivered or reported failed, so
//! the `receipt` the user gets is a true watermark.
//!
//! Inbound, [`run_inbound`] admits a MESSAGE exactly like an inbound call
//! (the source must be a company's trunk peer, else 403), checks the
//! company's `inbound.allow` and the addressed login (404 when nobody has
//! it), stores it in the user's conversation with the company (the name
//! whose chat route targets the sending extension, else the company itself)
//! and only then answers 200.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bridges::model::{Body as ChatBody, Payload};
use bridges::store::Stored;
use bridges::{ChatError, ClientId, CompanyName, CompanyRelay, ConversationId, Login, Seq};
use dialplans::{ChatDecision, ChatRoute, Dialplans};
use sip_trunk::dialog::Body;
use sip_trunk::message::{Request, Uri};
use sip_trunk::ua::OutgoingMessage;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::Chat;
use crate::accounts::DirectoryAccounts;
use crate::calls::route::{Local, trunk_target};
use crate::plans::SharedPlans;
use crate::sip::{IncomingMessage, Sip};

/// Content type of every MESSAGE we send.
const TEXT_PLAIN: &str = "text/plain;charset=UTF-8";

/// One post waiting to go out.
#[derive(Debug)]
struct Job {
    conversation: ConversationId,
    user: Login,
    company: CompanyName,
    seq: Seq,
    client_id: String,
    text: String,
}

/// What became of a post, for the chat.
#[derive(Debug)]
enum Outcome {
    Delivered {
        conversation: ConversationId,
        seq: Seq,
    },
    Failed {
        conversation: ConversationId,
        client_id: String,
        err: ChatError,
    },
}

/// Delivers company-conversation posts as SIP MESSAGE over the trunks.
pub struct SipRelay {
    plans: Arc<SharedPlans>,
    sip: Sip,
    local: Local,
    directory: Option<Arc<DirectoryAccounts>>,
    /// Per-conversation send queues; a queue's task removes its entry when idle.
    queues: Arc<Mutex<HashMap<ConversationId, mpsc::UnboundedSender<Job>>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl std::fmt::Debug for SipRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipRelay")
            .field("sent_by", &self.local.sent_by)
            .finish_non_exhaustive()
    }
}

fn refusal(code: &'static str, why: impl Into<String>) -> ChatError {
    ChatError::Company {
        code,
        why: why.into(),
    }
}

/// Why `company` cannot take a chat now, from the dialplan alone.
fn admit_by_plan(plans: &Dialplans, company: &CompanyName) -> Result<(String, String), ChatError> {
    match dialplans::evaluate_chat(plans, company.as_str()) {
        ChatDecision::Message { trunk, target } => Ok((trunk, target.as_str().to_owned())),
        ChatDecision::NotFound => Err(refusal(
            "company_not_found",
            format!("no company name {company}"),
        )),
        _ => Err(refusal(
            "company_no_chat",
            format!("{company} does not take chat messages"),
        )),
    }
}

/// The text a desk phone shows for a chat body: text as is, everything
/// else as a one-line description (a location with a map link).
pub fn render_text(body: &ChatBody) -> String {
    match body {
        ChatBody::Text { text } => text.clone(),
        ChatBody::Location(l) => {
            let mut s = String::from("Location: ");
            if let Some(label) = &l.label {
                s.push_str(label);
                s.push(' ');
            }
            s.push_str(&format!("{:.5}, {:.5}", l.lat, l.lon));
            if let Some(a) = l.accuracy_m {
                s.push_str(&format!(" (within {a:.0} m)"));
            }
            s.push_str(&format!(
                " https://www.openstreetmap.org/?mlat={:.5}&mlon={:.5}",
                l.lat, l.lon
            ));
            s
        }
        ChatBody::Contact(c) => {
            let mut s = format!("Contact: {}", c.name);
            if let Some(login) = &c.login {
                s.push_str(&format!(" (namecall: {login})"));
            }
            for p in &c.phones {
                s.push_str(&format!(", {p}"));
            }
            s
        }
        ChatBody::Image(m) | ChatBody::Video(m) | ChatBody::File(m) => {
            let kind = match body {
                ChatBody::Image(_) => "image",
                ChatBody::Video(_) => "video",
                _ => "file",
            };
            let name = m.name.as_deref().unwrap_or(&m.mime);
            format!(
                "[{kind} {name}, {} bytes: open the chat in namecall to see it]",
                m.size
            )
        }
    }
}

impl SipRelay {
    /// A relay over `sip` that routes with `plans`; `directory` gives the
    /// users' display names for From. Returns the relay and the task that
    /// applies outcomes to `chat` (spawn it).
    pub fn new(
        plans: Arc<SharedPlans>,
        sip: Sip,
        directory: Option<Arc<DirectoryAccounts>>,
        chat: Arc<Chat>,
        shutdown: watch::Receiver<bool>,
    ) -> (Arc<Self>, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::unbounded_channel();
        let local = Local {
            sent_by: sip.sent_by.clone(),
            trunks: sip.trunks.clone(),
            dns: sip.dns.clone(),
        };
        let relay = Arc::new(SipRelay {
            plans,
            sip,
            local,
            directory,
            queues: Arc::default(),
            outcomes: tx,
        });
        (relay, apply_outcomes(chat, rx, shutdown))
    }

    fn queues(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConversationId, mpsc::UnboundedSender<Job>>> {
        // map operations cannot leave it half-changed
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, job: Job) {
        let mut queues = self.queues();
        let job = match queues.get(&job.conversation) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let conversation = job.conversation.clone();
        // a fresh channel has its receiver: the send cannot fail
        let _ = tx.send(job);
        queues.insert(conversation.clone(), tx);
        let worker = Worker {
            plans: Arc::clone(&self.plans),
            sip: self.sip.clone(),
            local: self.local.clone(),
            directory: self.directory.clone(),
            queues: Arc::clone(&self.queues),
            outcomes: self.outcomes.clone(),
        };
        tokio::spawn(worker.run(conversation, rx));
    }
}

impl CompanyRelay for SipRelay {
    fn admit(&self, _user: &Login, company: &CompanyName) -> bridges::Result<()> {
        admit_by_plan(&self.plans.get(), company).map(|_| ())
    }

    fn relay(&self, stored: &Stored) {
        let msg = &stored.message;
        let Some(Payload::Post { body }) = &msg.payload else {
            return;
        };
        let Some((user, company)) = msg.conversation.company_pair() else {
            return;
        };
        self.enqueue(Job {
            conversation: msg.conversation.clone(),
            user,
            company,
            seq: msg.seq,
            client_id: msg.client_id.clone(),
            text: render_text(body),
        });
    }
}

/// Sends the posts of one conversation, one at a time.
struct Worker {
    plans: Arc<SharedPlans>,
    sip: Sip,
    local: Local,
    directory: Option<Arc<DirectoryAccounts>>,
    queues: Arc<Mutex<HashMap<ConversationId, mpsc::UnboundedSender<Job>>>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl Worker {
    async fn run(self, conversation: ConversationId, mut rx: mpsc::UnboundedReceiver<Job>) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    // Leave only under the map lock with an empty queue: an
                    // enqueue either got in before (and we go on) or finds no
                    // entry and starts a new worker.
                    let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            queues.remove(&conversation);
                            return;
                        }
                    }
                }
            };
            let outcome = match self.send(&job).await {
                Ok(()) => Outcome::Delivered {
                    conversation: job.conversation.clone(),
                    seq: job.seq,
                },
                Err(err) => {
                    info!(conversation = %job.conversation, seq = job.seq.0, cause = %err, "chat to company not delivered");
                    Outcome::Failed {
                        conversation: job.conversation.clone(),
                        client_id: job.client_id.clone(),
                        err,
                    }
                }
            };
            if self.outcomes.send(outcome).is_err() {
                return;
            }
        }
    }

    async fn send(&self, job: &Job) -> Result<(), ChatError> {
        let plans = self.plans.get();
        let (trunk, extension) = admit_by_plan(&plans, &job.company)?;
        let tenant = job.company.tenant();
        let unavailable = || {
            refusal(
                "company_unavailable",
                format!("{}'s trunk is not available", job.company),
            )
        };
        let target = trunk_target(&plans, &self.local, tenant.as_str(), &trunk)
            .await
            .ok_or_else(unavailable)?;
        let display = match &self.directory {
            Some(dir) => match directory::LoginName::parse(job.user.as_str()) {
                Ok(name) => dir
                    .directory()
                    .user_by_login(&name)
                    .await
                    .map(|u| u.display_name.as_str().to_owned())
                    .unwrap_or_else(|_| job.user.to_string()),
                Err(_) => job.user.to_string(),
            },
            None => job.user.to_string(),
        };
        let (Ok(from), Ok(to)) = (
            Uri::parse(&format!("sip:{}@{}", job.user, self.local.sent_by)),
            Uri::parse(&format!("sip:{extension}@{}", target.domain)),
        ) else {
            return Err(unavailable());
        };
        let msg = OutgoingMessage {
            from,
            display_name: Some(display),
            to,
            body: Body {
                content_type: TEXT_PLAIN.into(),
                data: job.text.clone().into_bytes().into(),
            },
            credentials: target.credentials.clone(),
        };
        debug!(trunk = %target.trunk_key, %extension, seq = job.seq.0, "chat to company as sip MESSAGE");
        match self
            .sip
            .send_message_over(msg, target.dest(), target.transport())
            .await
        {
            Ok(Some(code)) if (200..300).contains(&code) => Ok(()),
            Ok(Some(code)) => Err(refusal(
                "company_rejected",
                format!("the company's PBX answered {code}"),
            )),
            Ok(None) => Err(refusal(
                "company_timeout",
                "the company's PBX did not answer",
            )),
            Err(_) => Err(unavailable()),
        }
    }
}

/// Applies delivery outcomes to the chat: `receipt` frames for delivered
/// posts, `error` frames for failed ones, to every device of the user.
async fn apply_outcomes(
    chat: Arc<Chat>,
    mut rx: mpsc::UnboundedReceiver<Outcome>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let outcome = tokio::select! {
            o = rx.recv() => match o {
                Some(o) => o,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        // after the `ack` of the send that queued it (routed under this lock)
        let _order = chat.order.lock().await;
        match outcome {
            Outcome::Delivered { conversation, seq } => {
                match chat.service.peer_delivered(&conversation, seq).await {
                    Ok(out) => chat.route(out),
                    Err(e) => warn!(cause = %e, "cannot record a company delivery"),
                }
            }
            Outcome::Failed {
                conversation,
                client_id,
                err,
            } => {
                let out = chat.service.peer_failed(&conversation, &client_id, &err);
                chat.route(out);
            }
        }
    }
}

/// The name of `plan`'s company whose chat route targets `extension`, else
/// the company itself (`""`).
fn sub_name_for(plan: &dialplans::Dialplan, extension: &str) -> String {
    plan.names
        .iter()
        .find(|(_, entry)| {
            matches!(&entry.chat, Some(ChatRoute::Message { target, .. }) if target.as_str() == extension)
        })
        .map(|(sub, _)| sub.clone())
        .unwrap_or_default()
}

/// Why an incoming MESSAGE is refused: SIP status and reason.
type Refusal = (u16, &'static str);

/// The chat body of a MESSAGE: UTF-8 `text/plain` only.
fn body_of(req: &Request) -> Result<ChatBody, Refusal> {
    let ctype = req
        .headers
        .content_type()
        .unwrap_or("text/plain")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ctype != "text/plain" {
        return Err((415, "Unsupported Media Type"));
    }
    let text = std::str::from_utf8(&req.body).map_err(|_| (400, "Body Is Not UTF-8"))?;
    if text.len() > bridges::model::MAX_TEXT_BYTES {
        return Err((413, "Request Entity Too Large"));
    }
    Ok(ChatBody::Text {
        text: text.to_owned(),
    })
}

/// Answers incoming MESSAGEs until `messages` closes.
pub async fn run_inbound(
    chat: Arc<Chat>,
    sip: Sip,
    plans: Arc<SharedPlans>,
    directory: Option<Arc<DirectoryAccounts>>,
    mut messages: mpsc::Receiver<IncomingMessage>,
) {
    while let Some(m) = messages.recv().await {
        let chat = Arc::clone(&chat);
        let sip = sip.clone();
        let plans = plans.get();
        let directory = directory.clone();
        tokio::spawn(async move {
            let (status, reason) =
                match receive(&chat, &plans, directory.as_deref(), &sip.trunks, &m).await {
                    Ok(()) => (200, "OK"),
                    Err(r) => r,
                };
            let _ = sip.answer_message(m.handle, status, reason).await;
        });
    }
}

async fn receive(
    chat: &Chat,
    plans: &Dialplans,
    directory: Option<&DirectoryAccounts>,
    trunks: &crate::sip::TrunkStatus,
    m: &IncomingMessage,
) -> Result<(), Refusal> {
    let req = &m.request;
    let Some(tenant) = crate::sip::inbound::trunk_of(plans, trunks, m.source.ip()).await else {
        warn!(source = %m.source, "MESSAGE from a peer that is no company's trunk refused");
        return Err((403, "Forbidden"));
    };
    let addressed = req.uri.user.clone().unwrap_or_default();
    let Ok(user) = Login::parse(&addressed) else {
        return Err((404, "Not Found"));
    };
    let Some(plan) = plans.get(&tenant) else {
        return Err((403, "Forbidden"));
    };
    if !plan.inbound.allows(user.as_str()) {
        info!(%user, %tenant, "the company's inbound rules do not allow messaging this user");
        return Err((403, "Forbidden"));
    }
    if let Some(dir) = directory {
        let Ok(name) = directory::LoginName::parse(user.as_str()) else {
            return Err((404, "Not Found"));
        };
        match dir.directory().user_by_login(&name).await {
            Ok(_) => {}
            Err(directory::DirectoryError::NotFound) => return Err((404, "Not Found")),
            Err(e) => {
                warn!(cause = %e, "directory lookup for a MESSAGE failed");
                return Err((500, "Server Internal Error"));
            }
        }
    }
    let body = body_of(req)?;
    let extension = req
        .headers
        .from()
        .ok()
        .and_then(|f| f.uri.user.clone())
        .unwrap_or_default();
    let sub = sub_name_for(plan, &extension);
    let name = if sub.is_empty() {
        tenant.clone()
    } else {
        format!("{tenant}/{sub}")
    };
    let Ok(company) = CompanyName::parse(&name) else {
        warn!(%name, "company name cannot be a chat peer");
        return Err((404, "Not Found"));
    };
    let (Ok(call_id), Ok(cseq)) = (req.headers.call_id(), req.headers.cseq()) else {
        return Err((400, "Bad Request"));
    };
    let client_id = ClientId::for_sip(call_id, cseq.seq);
    // held from commit to routing, as for sends from devices (see `Chat`)
    let _order = chat.order.lock().await;
    match chat
        .service
        .receive_from_company(super::now(), &user, &company, &client_id, body)
        .await
    {
        Ok(out) => {
            info!(%user, %company, %extension, "chat from company stored");
            chat.route(out);
            Ok(())
        }
        Err(ChatError::Invalid { .. }) => Err((400, "Bad Request")),
        Err(e) => {
            warn!(cause = %e, "cannot store a MESSAGE");
            Err((500, "Server Internal Error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridges::model::Location;

    fn plans() -> Dialplans {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../dialplans/examples/acme.yaml"),
        )
        .expect("example dialplan");
        Dialplans::from_sources([("acme.yaml", text.as_str())]).expect("valid")
    }

    #[test]
    fn admission_follows_the_dialplan() {
        let p = plans();
        let name = |s: &str| CompanyName::parse(s).expect("name");
        assert_eq!(
            admit_by_plan(&p, &name("acme/sales")).expect("chat route"),
            ("main".to_owned(), "100".to_owned())
        );
        let code = |s: &str| admit_by_plan(&p, &name(s)).map_err(|e| e.code()).err();
        assert_eq!(code("acme/support"), Some("company_no_chat"));
        assert_eq!(code("acme"), Some("company_no_chat"));
        assert_eq!(code("acme/nothing"), Some("company_not_found"));
        assert_eq!(code("nobody"), Some("company_not_found"));
    }

    #[test]
    fn replies_map_back_to_the_name_that_chats_with_the_extension() {
        let p = plans();
        let plan = p.get("acme").expect("acme");
        assert_eq!(sub_name_for(plan, "100"), "sales");
        assert_eq!(sub_name_for(plan, "101"), "");
        assert_eq!(sub_name_for(plan, ""), "");
    }

    #[test]
    fn bodies_render_as_text() {
        let loc = ChatBody::Location(Location {
            lat: 48.8584,
            lon: 2.2945,
            accuracy_m: Some(12.0),
            label: Some("Eiffel".into()),
        });
        assert_eq!(
            render_text(&loc),
            "Location: Eiffel 48.85840, 2.29450 (within 12 m) https://www.openstreetmap.org/?mlat=48.85840&mlon=2.29450"
        );
        assert_eq!(render_text(&ChatBody::Text { text: "hi".into() }), "hi");
    }

    #[test]
    fn only_utf8_text_is_accepted() {
        let req = |ctype: &str, body: &[u8]| {
            Request::new(
                sip_trunk::message::Method::Message,
                Uri::parse("sip:alice@gw").expect("uri"),
            )
            .with_body(ctype, body.to_vec())
        };
        assert!(matches!(
            body_of(&req("text/plain; charset=UTF-8", b"hello")),
            Ok(ChatBody::Text { text }) if text == "hello"
        ));
        assert_eq!(
            body_of(&req("application/im-iscomposing+xml", b"<x/>")).err(),
            Some((415, "Unsupported Media Type"))
        );
        assert_eq!(
            body_of(&req("text/plain", &[0xff, 0xfe]))
                .err()
                .map(|r| r.0),
            Some(400)
        );
    }
}
