//! Name search latency at a million names.
//!
//! Loads N synthetic companies (default 1,000,000) into a SQLite file, then
//! times `Directory::search` for exact, prefix and fuzzy (typo) queries and
//! prints p50/p99/max plus how often the intended name was in the top 10.
//!
//! ```text
//! cargo bench -p directory --bench search -- [N] [--db PATH] [--queries Q]
//! ```
//!
//! With `--db PATH` an already loaded file is reused (loading 1M names takes
//! a while); without it a temp file is used and removed.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use directory::{Directory, DirectoryOptions, DisplayName, LoginName};

/// Small deterministic PRNG (xorshift64*), so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "cr", "dr", "fl", "gr", "kl", "pr", "st", "tr", "sh", "ch", "th",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"];
const CODAS: &[&str] = &["", "", "", "n", "r", "s", "x", "l", "m", "nd", "rk", "st"];
const INDUSTRY: &[&str] = &[
    "bank",
    "insurance",
    "logistics",
    "bakery",
    "dental",
    "clinic",
    "motors",
    "energy",
    "telecom",
    "media",
    "foods",
    "pharma",
    "legal",
    "consulting",
    "travel",
    "hotels",
    "airlines",
    "realty",
    "capital",
    "finance",
    "software",
    "systems",
    "labs",
    "robotics",
    "textiles",
    "furniture",
    "garden",
    "florist",
    "optics",
    "fitness",
    "security",
    "cleaning",
    "catering",
    "brewery",
    "winery",
    "coffee",
    "printing",
    "design",
    "studio",
    "records",
    "shipping",
    "freight",
    "mining",
    "steel",
    "chemicals",
    "solar",
    "water",
    "gas",
    "taxi",
    "rentals",
    "auto",
    "tyres",
    "books",
    "toys",
    "fashion",
    "jewellery",
    "pets",
    "vet",
    "school",
    "academy",
];
const SUFFIX: &[&str] = &[
    "Group", "Holdings", "Partners", "GmbH", "AG", "Ltd", "Co", "SA", "Inc",
];
const CITIES: &[(&str, &str)] = &[
    ("zurich", "Zürich"),
    ("koln", "Köln"),
    ("malmo", "Malmö"),
    ("sao-paulo", "São Paulo"),
    ("lodz", "Łódź"),
    ("geneve", "Genève"),
    ("paris", "Paris"),
    ("berlin", "Berlin"),
    ("oslo", "Oslo"),
    ("madrid", "Madrid"),
    ("wien", "Wien"),
    ("praha", "Praha"),
];

fn brand(rng: &mut Rng) -> String {
    let syllables = 2 + rng.below(2);
    let mut s = String::new();
    for _ in 0..syllables {
        s.push_str(rng.pick(ONSETS));
        s.push_str(rng.pick(VOWELS));
    }
    s.push_str(rng.pick(CODAS));
    s
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// N unique (login, display) pairs over a vocabulary of ~60k brand words.
fn generate(n: usize) -> Vec<(LoginName, DisplayName)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let brands: Vec<String> = {
        let mut seen = HashSet::new();
        let mut v = Vec::new();
        while v.len() < 60_000 {
            let b = brand(&mut rng);
            if b.len() >= 3 && seen.insert(b.clone()) {
                v.push(b);
            }
        }
        v
    };
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let b = &brands[rng.below(brands.len())];
        let ind = rng.pick(INDUSTRY);
        let (mut login, mut display) = (
            format!("{b}-{ind}"),
            format!("{} {}", capitalise(b), capitalise(ind)),
        );
        match rng.below(4) {
            0 => {
                let (cl, cd) = CITIES[rng.below(CITIES.len())];
                login.push('-');
                login.push_str(cl);
                display.push(' ');
                display.push_str(cd);
            }
            1 => {
                display.push(' ');
                display.push_str(rng.pick(SUFFIX));
            }
            _ => {}
        }
        if !seen.insert(login.clone()) {
            continue;
        }
        let (Ok(l), Ok(d)) = (LoginName::parse(&login), DisplayName::parse(&display)) else {
            continue;
        };
        out.push((l, d));
    }
    out
}

/// One typo: substitute, transpose, delete or insert a letter.
fn typo(rng: &mut Rng, w: &str) -> String {
    let mut c: Vec<char> = w.chars().collect();
    if c.len() < 4 {
        return w.to_owned();
    }
    let i = 1 + rng.below(c.len() - 2);
    match rng.below(4) {
        0 => c[i] = if c[i] == 'q' { 'x' } else { 'q' },
        1 => c.swap(i, i + 1),
        2 => {
            c.remove(i);
        }
        _ => c.insert(i, 'e'),
    }
    c.into_iter().collect()
}

struct Stats {
    lat: Vec<Duration>,
    found: usize,
    /// Process CPU time (all threads, incl. the SQLite worker) per query:
    /// less sensitive than wall time to other load on a shared machine.
    cpu_per_query: Option<Duration>,
}

/// User + system CPU time of this process, from `/proc/self/stat` (Linux;
/// 10 ms ticks, fine over hundreds of queries).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn report(label: &str, mut s: Stats) {
    s.lat.sort();
    let p = |q: f64| s.lat[((s.lat.len() as f64 - 1.0) * q) as usize];
    println!(
        "{label:<8} n={:<5} p50={:>8.3?} p99={:>8.3?} max={:>8.3?} cpu/query={:>8.3?} target-in-top10={:.1}%",
        s.lat.len(),
        p(0.50),
        p(0.99),
        p(1.0),
        s.cpu_per_query.unwrap_or_default(),
        100.0 * s.found as f64 / s.lat.len() as f64
    );
}

async fn run(dir: &Directory, queries: &[(String, String)]) -> Stats {
    let mut lat = Vec::with_capacity(queries.len());
    let mut found = 0;
    let cpu0 = process_cpu();
    for (q, target) in queries {
        let t = Instant::now();
        let hits = dir.search(q, 10).await.expect("search");
        lat.push(t.elapsed());
        if hits.iter().any(|h| &h.name == target) {
            found += 1;
        }
    }
    let cpu_per_query = cpu0
        .zip(process_cpu())
        .map(|(a, b)| b.saturating_sub(a) / queries.len().max(1) as u32);
    Stats {
        lat,
        found,
        cpu_per_query,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut n = 1_000_000usize;
    let mut db: Option<String> = None;
    let mut nq = 1000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--db" => db = args.next(),
            "--queries" => nq = args.next().and_then(|v| v.parse().ok()).unwrap_or(nq),
            "--bench" => {}
            s => n = s.parse().unwrap_or(n),
        }
    }
    let tmp = std::env::temp_dir().join(format!("namecall-search-bench-{}.db", std::process::id()));
    let path = db.clone().unwrap_or_else(|| tmp.display().to_string());
    let dir = Directory::open_with(&format!("sqlite://{path}"), DirectoryOptions::default())
        .await
        .expect("open");
    let names = generate(n);
    let have: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(dir.pool())
        .await
        .expect("count");
    if have == 0 {
        let t = Instant::now();
        for (i, chunk) in names.chunks(50_000).enumerate() {
            dir.bulk_create_tenants(chunk, SystemTime::now())
                .await
                .expect("load");
            eprintln!("loaded {}", (i + 1) * chunk.len());
        }
        sqlx::query("ANALYZE")
            .execute(dir.pool())
            .await
            .expect("analyze");
        println!("loaded {n} names in {:.1?}", t.elapsed());
    } else {
        println!("reusing {path} with {have} tenants");
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database file: {} MiB", size / (1024 * 1024));

    let mut rng = Rng(42);
    let sample: Vec<&(LoginName, DisplayName)> =
        (0..nq).map(|_| &names[rng.below(names.len())]).collect();
    let exact: Vec<(String, String)> = sample
        .iter()
        .map(|(l, _)| (l.to_string(), l.to_string()))
        .collect();
    // prefix: the brand word and the start of the industry word ("zorvex ba")
    let prefix: Vec<(String, String)> = sample
        .iter()
        .map(|(l, _)| {
            let mut parts = l.as_str().split('-');
            let b = parts.next().unwrap_or_default();
            let i = parts.next().unwrap_or_default();
            (format!("{b} {}", &i[..i.len().min(2)]), l.to_string())
        })
        .collect();
    // fuzzy: one typo in the brand, the industry word intact ("zorvx bank")
    let fuzzy: Vec<(String, String)> = sample
        .iter()
        .map(|(l, _)| {
            let mut parts = l.as_str().split('-');
            let b = parts.next().unwrap_or_default();
            let i = parts.next().unwrap_or_default();
            (format!("{} {i}", typo(&mut rng, b)), l.to_string())
        })
        .collect();
    // fuzzy2: typo in both words, like "acme bnk" -> "akme bnk"
    let fuzzy2: Vec<(String, String)> = sample
        .iter()
        .map(|(l, _)| {
            let mut parts = l.as_str().split('-');
            let b = parts.next().unwrap_or_default();
            let i = parts.next().unwrap_or_default();
            (
                format!("{} {}", typo(&mut rng, b), typo(&mut rng, i)),
                l.to_string(),
            )
        })
        .collect();
    // brand only: a short prefix over the whole directory ("zor")
    let short: Vec<(String, String)> = sample
        .iter()
        .map(|(l, _)| (l.as_str()[..3].to_string(), l.to_string()))
        .collect();

    let _ = run(&dir, &exact[..exact.len().min(100)]).await; // warm the page cache
    report("exact", run(&dir, &exact).await);
    report("prefix", run(&dir, &prefix).await);
    report("short", run(&dir, &short).await);
    report("fuzzy", run(&dir, &fuzzy).await);
    report("fuzzy2", run(&dir, &fuzzy2).await);
    dir.close().await;
    if db.is_none() {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{ext}"));
        }
    }
}
