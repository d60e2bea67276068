//! Chat load through the WebSocket path, with NATS in the same run
//! (issue 6, done-when 6). See `ws_load/load.rs` for what is measured.
//!
//! Run: `scripts/bench-chat.sh` (builds the release gateway, finds or
//! installs nats-server), or directly:
//! `cargo bench -p gateway --bench ws_load -- --gateway-bin target/release/namecall
//!  [--idle 1000,10000] [--active 1000] [--window 4] [--rate N] [--secs 20]
//!  [--warmup 5] [--ack-ms 250] [--nats-bin PATH | --no-nats] [--smoke]`
//! Numbers go to `docs/benchmarks.md` with the command.

#[path = "ws_load/load.rs"]
mod load;

use std::path::PathBuf;
use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: ws_load --gateway-bin PATH [--idle N[,N…]] [--active M] [--window W] [--rate R] \
         [--secs S] [--warmup S] [--text-len B] [--ack-ms MS] [--nats-bin PATH | --no-nats] [--smoke]"
    );
    std::process::exit(2)
}

fn value<T: std::str::FromStr>(args: &mut impl Iterator<Item = String>, flag: &str) -> T {
    let Some(v) = args.next() else {
        eprintln!("{flag} needs a value");
        usage()
    };
    v.parse().unwrap_or_else(|_| {
        eprintln!("{flag}: bad value {v:?}");
        usage()
    })
}

fn main() -> anyhow::Result<()> {
    let mut gateway_bin: Option<PathBuf> = None;
    let mut nats_bin = load::find_nats();
    let mut idles: Vec<usize> = vec![1000];
    let mut cfg: Option<load::Config> = None;
    let mut active = 1000;
    let mut window = 4;
    let mut rate: Option<u64> = None;
    let mut secs = 20.0;
    let mut warmup = 5.0;
    let mut text_len = 40;
    let mut ack_ms = 250;
    let mut smoke = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--gateway-bin" => gateway_bin = Some(value(&mut args, &a)),
            "--nats-bin" => nats_bin = Some(value(&mut args, &a)),
            "--no-nats" => nats_bin = None,
            "--idle" => {
                let list: String = value(&mut args, &a);
                idles = list
                    .split(',')
                    .map(|s| s.trim().parse().unwrap_or_else(|_| usage()))
                    .collect();
            }
            "--active" => active = value(&mut args, &a),
            "--window" => window = value(&mut args, &a),
            "--rate" => rate = Some(value(&mut args, &a)),
            "--secs" => secs = value(&mut args, &a),
            "--warmup" => warmup = value(&mut args, &a),
            "--text-len" => text_len = value(&mut args, &a),
            "--ack-ms" => ack_ms = value(&mut args, &a),
            "--smoke" => smoke = true,
            // cargo bench passes this to every bench target
            "--bench" => {}
            _ => usage(),
        }
    }
    let Some(gateway_bin) = gateway_bin.or_else(|| {
        // next to this bench binary: target/release/deps/ws_load-… → target/release/namecall
        let exe = std::env::current_exe().ok()?;
        let p = exe.parent()?.parent()?.join("namecall");
        p.exists().then_some(p)
    }) else {
        eprintln!(
            "no namecall binary: build it (cargo build --release -p gateway) or pass --gateway-bin"
        );
        usage()
    };
    let nofile = load::raise_nofile();
    println!("RLIMIT_NOFILE soft limit: {nofile}");
    if smoke {
        cfg = Some(load::Config::smoke(gateway_bin.clone(), nats_bin.clone()));
        idles = vec![cfg.as_ref().map_or(0, |c| c.idle)];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for idle in idles {
        let c = match &cfg {
            Some(c) => c.clone(),
            None => load::Config {
                idle,
                active,
                window,
                rate,
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(secs),
                gateway_bin: gateway_bin.clone(),
                nats_bin: nats_bin.clone(),
                text_len,
                ack_every: Duration::from_millis(ack_ms),
            },
        };
        // one descriptor per client here, and one per connection in the server
        let needed = (c.idle + c.active) as u64 + 256;
        if nofile < needed {
            eprintln!(
                "warning: RLIMIT_NOFILE {nofile} < {needed} needed for {} clients",
                c.idle + c.active
            );
        }
        println!(
            "== idle {} active {} window {} rate {} warmup {:?} window {:?}",
            c.idle,
            c.active,
            c.window,
            c.rate.map_or("max".to_owned(), |r| r.to_string()),
            c.warmup,
            c.duration
        );
        let (ours, theirs) = rt.block_on(load::run(&c))?;
        if ours.errors > 0 || theirs.as_ref().is_some_and(|t| t.errors > 0) {
            anyhow::bail!("errors during the run (lost, repeated or refused messages)");
        }
    }
    Ok(())
}
