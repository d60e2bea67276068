//! Store throughput: durable messages per second into SQLite (WAL), each
//! send its own committed transaction (the ack-after-durable path).
//!
//! Run: `cargo bench -p bridges --bench store_throughput [-- N]`
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

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
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
