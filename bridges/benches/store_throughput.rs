//! Store throughput: durable messages per second into SQLite (WAL), each
//! send its own committed transaction (the ack-after-durable path).
//!
//! Run: `cargo bench -p bridges --bench store_throughput [-- N] [--writer]`
//! (`--writer`: only the gateway's batch writer scenarios)
//! Prints one line per scenario; numbers go to `docs/benchmarks.md`.

use std::sync::Arc;

use bridges::store::SendRequest;
use std::time::{Duration, Instant};

use bridges::{
    Body, ChatStore, ClientId, ConversationId, DeviceId, Login, StoreOptions, Timestamp,
};

fn l(s: &str) -> Login {
    Login::parse(s).expect("bench logins are valid")
}

async fn open(dir: &tempfile::TempDir, sync_full: bool) -> ChatStore {
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let opts = StoreOptions {
        sync_full,
        ..StoreOptions::default()
    };
    ChatStore::open_with(&url, opts).await.expect("open store")
}

/// `tasks` concurrent senders, each in its own one-to-one conversation,
/// `n` messages in total.
async fn sends(store: Arc<ChatStore>, tasks: usize, n: usize) -> Duration {
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let me = l(&format!("user{t}"));
            let peer = l(&format!("peer{t}"));
            let dm = ConversationId::direct(&me, &peer);
            for i in 0..n / tasks {
                let cid = ClientId::parse(&format!("t{t}-{i}")).expect("valid id");
                let body = Body::Text {
                    text: format!("message number {i} from task {t}, about sixty bytes"),
                };
                store
                    .send(&me, &dm, &cid, body, Timestamp(i as i64))
                    .await
                    .expect("send");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    start.elapsed()
}

/// One task, `n` messages in group commits of `batch`.
async fn batched(store: Arc<ChatStore>, batch: usize, n: usize) -> Duration {
    let me = l("batcher");
    let dm = ConversationId::direct(&me, &l("peer"));
    let start = Instant::now();
    for b in 0..n / batch {
        let reqs = (0..batch)
            .map(|i| SendRequest {
                sender: me.clone(),
                conversation: dm.clone(),
                client_id: ClientId::parse(&format!("b{b}-{i}")).expect("valid id"),
                body: Body::Text {
                    text: format!("message number {i} of batch {b}, about sixty bytes"),
                },
            })
            .collect();
        for r in store
            .send_batch(reqs, Timestamp(b as i64))
            .await
            .expect("batch")
        {
            r.expect("send");
        }
    }
    start.elapsed()
}

/// The gateway's group commit: the [`BatchWriter`] (its own connection,
/// synchronous) with `users` one-to-one conversations (user *i* writes to
/// user *i+1*), `batch` sends per commit and, as the WebSocket load has
/// them, one cursor ack per receiver for every `ack_every` sends of theirs.
/// Returns the time and the messages written.
fn writer_load(
    store: &ChatStore,
    users: usize,
    batch: usize,
    ack_every: usize,
    n: usize,
) -> (Duration, Duration, usize) {
    use bridges::store::{BatchDone, BatchWrite};
    let mut writer = store.batch_writer().expect("batch writer");
    let logins: Vec<Login> = (0..users).map(|i| l(&format!("u{i:05}"))).collect();
    let convs: Vec<ConversationId> = (0..users)
        .map(|i| ConversationId::direct(&logins[i], &logins[(i + 1) % users]))
        .collect();
    let device = DeviceId("bench".into());
    let mut last_cursor = vec![0_i64; users];
    let start = Instant::now();
    let cpu0 = thread_cpu();
    let mut sent = 0;
    let mut k = 0;
    while sent < n {
        let mut writes = Vec::with_capacity(batch + batch / ack_every + 1);
        // the receiver of each write (`None` for acks)
        let mut to = Vec::with_capacity(writes.capacity());
        for _ in 0..batch {
            let i = k % users;
            to.push(Some((i + 1) % users));
            writes.push(BatchWrite::Send(SendRequest {
                sender: logins[i].clone(),
                conversation: convs[i].clone(),
                client_id: ClientId::parse(&format!("w{k}")).expect("valid id"),
                body: Body::Text {
                    text: format!("message number {k}, about sixty bytes of text here"),
                },
            }));
            if k % ack_every == ack_every - 1 {
                // the receiver acks what it has got
                let r = (i + 1) % users;
                to.push(None);
                writes.push(BatchWrite::Ack {
                    user: logins[r].clone(),
                    device: device.clone(),
                    cursor: last_cursor[r],
                });
            }
            k += 1;
        }
        let done = writer
            .write_batch(writes, Timestamp(k as i64))
            .expect("batch");
        for (to, d) in to.into_iter().zip(done) {
            if let (Some(r), BatchDone::Stored(st)) = (to, d.expect("write")) {
                last_cursor[r] = st.cursor;
                sent += 1;
            }
        }
    }
    (start.elapsed(), thread_cpu() - cpu0, sent)
}

/// CPU time (user + system) of the calling thread, from
/// `/proc/thread-self/stat` (clock ticks of 10 ms): on a shared machine a
/// writer's cost per message is its CPU time, not the wall clock.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // fields after the command name, which ends with the last ')'
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3 and
    // field 3 (state) is not a number
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let only_writer = std::env::args().any(|a| a == "--writer");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for batch in [16, 256] {
            let dir = tempfile::tempdir().expect("tempdir");
            // checkpoints inside commits (SQLite's default), where the
            // gateway runs them beside the writer: the cost is here either way
            let store = open(&dir, false).await;
            let (took, cpu, sent) = writer_load(&store, 1000, batch, 4, n.max(batch));
            println!(
                "writer synchronous=NORMAL   size={batch}  {sent} msgs + acks, 1000 conversations, in {:>7.3} s = {:>8.0} msg/s  ({:.1} µs/msg, CPU {:.1} µs/msg)",
                took.as_secs_f64(),
                sent as f64 / took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / sent as f64,
                cpu.as_secs_f64() * 1e6 / sent as f64
            );
            store.close().await;
        }
        if only_writer {
            return;
        }
        for (sync_full, label) in [(false, "synchronous=NORMAL"), (true, "synchronous=FULL")] {
            for tasks in [1, 8] {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = Arc::new(open(&dir, sync_full).await);
                let took = sends(store.clone(), tasks, n).await;
                println!(
                    "send  {label:<18} tasks={tasks}  {n} msgs in {:>7.3} s = {:>8.0} msg/s  ({:.1} µs/msg)",
                    took.as_secs_f64(),
                    n as f64 / took.as_secs_f64(),
                    took.as_secs_f64() * 1e6 / n as f64
                );
                if tasks == 1 && !sync_full {
                    // Catch-up read of one device: everything the peer has.
                    let peer = l("peer0");
                    let device = DeviceId("bench".into());
                    let start = Instant::now();
                    let mut total = 0;
                    let mut since = 0;
                    loop {
                        let b = store
                            .sync(&peer, &device, Some(since), 500, Timestamp(0))
                            .await
                            .expect("sync");
                        total += b.messages.len();
                        since = b.cursor;
                        if !b.more {
                            break;
                        }
                    }
                    let took = start.elapsed();
                    println!(
                        "sync  pages of 500               {total} msgs in {:>7.3} s = {:>8.0} msg/s",
                        took.as_secs_f64(),
                        total as f64 / took.as_secs_f64()
                    );
                }
                store.close().await;
            }
            let batch = 64;
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(open(&dir, sync_full).await);
            let took = batched(store.clone(), batch, n).await;
            println!(
                "batch {label:<18} size={batch}  {n} msgs in {:>7.3} s = {:>8.0} msg/s  ({:.1} µs/msg)",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / n as f64
            );
            store.close().await;
        }
    });
}
