//! Chat load through the WebSocket path, with NATS in the same run
//! (issue 6, done-when 6). See `ws_load/load.rs` for what is measured.
//!
//! Run: `scripts/bench-chat.sh` (builds the release gateway, finds or
//! installs nats-server), or directly:
//! `cargo bench -p gateway --bench ws_load -- --gateway-bin target/release/namecall
//!  [--idle 1000,10000] [--active 1000] [--window 4] [--rate N[,N…]] [--secs 20]
//!  [--warmup 5] [--ack-ms 250] [--nats-bin PATH | --no-nats] [--smoke]`
//! Numbers go to `docs/benchmarks.md` with the command.
//!
//! With several paced rates (`--rate 2000,4000,8000`) every idle count runs
//! at each rate, and the end prints, per system, the highest rate that
//! held: at least 95% of the offered messages/s delivered with p99 under
//! [`P99_TARGET_MS`] (the latency target, judged below saturation).

#[path = "ws_load/load.rs"]
mod load;

use std::path::PathBuf;
use std::time::Duration;

/// The p99 target for a paced rate to count as held.
const P99_TARGET_MS: f64 = 50.0;

/// Share of the offered rate that must arrive for a paced rate to count as held.
const HELD_SHARE: f64 = 0.95;

fn usage() -> ! {
    eprintln!(
        "usage: ws_load --gateway-bin PATH [--idle N[,N…]] [--active M] [--window W] [--rate R[,R…]] \
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
    let mut rates: Vec<Option<u64>> = vec![None];
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
            "--rate" => {
                let list: String = value(&mut args, &a);
                rates = list
                    .split(',')
                    .map(|s| Some(s.trim().parse().unwrap_or_else(|_| usage())))
                    .collect();
            }
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
    // (system, idle) → highest paced rate that held
    let mut held: Vec<(String, usize, u64)> = Vec::new();
    for (idle, rate) in idles
        .iter()
        .flat_map(|&i| rates.iter().map(move |&r| (i, r)))
    {
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
        if let Some(r) = c.rate {
            for rep in std::iter::once(&ours).chain(theirs.as_ref()) {
                let ok = rep.delivered_per_s >= HELD_SHARE * r as f64 && rep.p99_ms < P99_TARGET_MS;
                println!(
                    "paced {r}/s: {} {} (delivered {:.0}/s, p99 {:.1} ms)",
                    rep.system,
                    if ok { "held" } else { "not held" },
                    rep.delivered_per_s,
                    rep.p99_ms
                );
                if ok {
                    match held
                        .iter_mut()
                        .find(|(s, i, _)| *s == rep.system && *i == c.idle)
                    {
                        Some(h) => h.2 = h.2.max(r),
                        None => held.push((rep.system.clone(), c.idle, r)),
                    }
                }
            }
        }
    }
    if rates.iter().any(Option::is_some) {
        for idle in &idles {
            for system in ["namecall", "nats-server"] {
                let best = held
                    .iter()
                    .find(|(s, i, _)| s == system && i == idle)
                    .map_or("none of the rates".to_owned(), |h| format!("{}/s", h.2));
                println!(
                    "highest paced rate with p99 < {P99_TARGET_MS} ms, idle {idle}: {system} {best}"
                );
            }
        }
    }
    Ok(())
}
