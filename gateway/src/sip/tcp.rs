//! SIP over TCP for the SIP task: a listener, one tokio task per
//! connection, and outbound connections opened on demand.
//!
//! Framing is `sip_trunk::message::check_stream` (Content-Length is
//! mandatory on streams, RFC 3261 18.3); every framed message goes to the SIP
//! task, which feeds it to the user agent like a datagram with
//! `Transport::Tcp`. Responses and requests to a peer reuse its connection
//! (RFC 3261 18.2.2 sends responses back on the connection the request came
//! on); a peer without one gets a new outbound connection. CRLF keep-alive
//! pings are answered with a CRLF pong (RFC 5626 3.5.1). A stream that
//! cannot be framed (a broken Content-Length, 64 KiB without an end of
//! headers) is closed, since it can never be resynchronised.

use std::collections::HashMap;
use std::net::SocketAddr;

use sip_trunk::message::{ParseError, check_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Writer side of one connection, owned by the SIP task.
type Writer = mpsc::UnboundedSender<Vec<u8>>;

/// What the listener and connection tasks tell the SIP task.
#[derive(Debug)]
pub(crate) enum TcpInput {
    /// A peer connected; its writes go through `writer`. Sent before any
    /// message of that connection, on the same channel.
    Connected { peer: SocketAddr, writer: Writer },
    /// One framed SIP message from `from`.
    Message { from: SocketAddr, data: Vec<u8> },
    /// The connection to `peer` ended.
    Closed { peer: SocketAddr },
    /// A connection to `peer` could not be opened: the requests queued for
    /// it are lost, and their transactions should fail now.
    Unreachable { peer: SocketAddr },
}

/// The SIP task's side: one writer per live connection, keyed by the peer.
pub(crate) struct TcpTransport {
    conns: HashMap<SocketAddr, Writer>,
    input: mpsc::Sender<TcpInput>,
}

impl TcpTransport {
    /// Starts accepting on `listener` (if any); everything arrives on the
    /// returned receiver, which the SIP task reads next to its UDP socket.
    pub(crate) fn start(listener: Option<TcpListener>) -> (Self, mpsc::Receiver<TcpInput>) {
        let (input, rx) = mpsc::channel(1024);
        if let Some(listener) = listener {
            tokio::spawn(accept_loop(listener, input.clone()));
        }
        (
            Self {
                conns: HashMap::new(),
                input,
            },
            rx,
        )
    }

    /// Bookkeeping for `Connected`/`Closed`; returns a framed message to feed the UA.
    pub(crate) fn handle(&mut self, input: TcpInput) -> Option<(SocketAddr, Vec<u8>)> {
        match input {
            TcpInput::Connected { peer, writer } => {
                self.conns.insert(peer, writer);
                None
            }
            TcpInput::Message { from, data } => Some((from, data)),
            TcpInput::Closed { peer } | TcpInput::Unreachable { peer } => {
                // Only forget the writer if it is the one that closed.
                if self.conns.get(&peer).is_some_and(|w| w.is_closed()) {
                    self.conns.remove(&peer);
                }
                None
            }
        }
    }

    /// Sends `data` to `dest` on its connection, opening one if needed.
    /// Returns `false` when the bytes could not even be queued.
    pub(crate) fn send(&mut self, dest: SocketAddr, data: Vec<u8>) -> bool {
        if let Some(w) = self.conns.get(&dest) {
            match w.send(data) {
                Ok(()) => return true,
                Err(e) => {
                    self.conns.remove(&dest);
                    return self.connect(dest, e.0);
                }
            }
        }
        self.connect(dest, data)
    }

    fn connect(&mut self, dest: SocketAddr, first: Vec<u8>) -> bool {
        let (writer, rx) = mpsc::unbounded_channel();
        if writer.send(first).is_err() {
            return false;
        }
        self.conns.insert(dest, writer);
        let input = self.input.clone();
        tokio::spawn(async move {
            match TcpStream::connect(dest).await {
                Ok(stream) => connection(stream, dest, rx, input).await,
                Err(e) => {
                    warn!(cause = %e, %dest, "sip tcp connect failed");
                    // drop the writer first so `handle` sees it closed
                    drop(rx);
                    let _ = input.send(TcpInput::Unreachable { peer: dest }).await;
                }
            }
        });
        true
    }
}

async fn accept_loop(listener: TcpListener, input: mpsc::Sender<TcpInput>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (writer, rx) = mpsc::unbounded_channel();
                if input
                    .send(TcpInput::Connected { peer, writer })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::spawn(connection(stream, peer, rx, input.clone()));
            }
            Err(e) => {
                // EMFILE and the like: keep the listener and let the load pass.
                warn!(cause = %e, "sip tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Reads and frames one connection and writes what the SIP task queues for it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    input: mpsc::Sender<TcpInput>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    'conn: loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(data) => {
                    if let Err(e) = wr.write_all(&data).await {
                        debug!(cause = %e, %peer, "sip tcp write failed");
                        break 'conn;
                    }
                }
                // The SIP task dropped the writer: it is shutting down.
                None => break 'conn,
            },
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) => break 'conn,
                    Ok(n) => n,
                    Err(e) => {
                        debug!(cause = %e, %peer, "sip tcp read failed");
                        break 'conn;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match check_stream(&buf) {
                        Ok(used) => {
                            if buf[0] == b'\r' || buf[0] == b'\n' {
                                // A CRLFCRLF ping gets a CRLF pong; a lone CRLF is a pong.
                                if used >= 4 && wr.write_all(b"\r\n").await.is_err() {
                                    break 'conn;
                                }
                            } else {
                                let data = buf[..used].to_vec();
                                if input.send(TcpInput::Message { from: peer, data }).await.is_err() {
                                    break 'conn;
                                }
                            }
                            buf.drain(..used);
                        }
                        Err(ParseError::Incomplete) => break,
                        Err(e) => {
                            warn!(cause = %e, %peer, "sip tcp stream cannot be framed, closing");
                            break 'conn;
                        }
                    }
                }
            }
        }
    }
    // Drop the writer side first so `handle(Closed)` sees it closed.
    drop(outgoing);
    let _ = input.send(TcpInput::Closed { peer }).await;
}
