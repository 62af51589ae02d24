//! The routing table at scale: loading a config whose `tenants_file` lists
//! 1,000,000 tenants, and looking tenants up (explicit and hash-placed).
//!
//! `cargo bench --bench routing_table`

use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantgate::router::Router;

const TENANTS: usize = 1_000_000;

fn write_fixture() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tenantgate-bench-routing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut tenants = std::io::BufWriter::new(
        std::fs::File::create(dir.join("tenants.toml")).expect("tenants file"),
    );
    for i in 0..TENANTS {
        let shard = ["s0", "s1", "s2", "s3"][i % 4];
        writeln!(
            tenants,
            "[[tenants]]\nid = \"tenant-{i}\"\nshard = \"{shard}\"\n"
        )
        .expect("write");
    }
    drop(tenants);
    let mut config = String::from(
        "[server]\nlisten = \"127.0.0.1:6432\"\n\n[[users]]\nname = \"app\"\npassword = \"secret\"\n\n[routing]\nhash_shards = [\"s0\", \"s1\", \"s2\", \"s3\"]\ntenants_file = \"tenants.toml\"\n",
    );
    for s in ["s0", "s1", "s2", "s3"] {
        config.push_str(&format!(
            "\n[[shards]]\nname = \"{s}\"\nurl = \"postgres://postgres@127.0.0.1:5432/app\"\n"
        ));
    }
    std::fs::write(dir.join("routing.toml"), config).expect("config");
    dir.join("routing.toml")
}

fn bench(c: &mut Criterion) {
    let path = write_fixture();
    // One timed load, printed as the headline figure (criterion below
    // repeats it for a distribution).
    let start = Instant::now();
    let config = tenantgate::config::load_file(&path).expect("loads");
    let router = Router::new(&config);
    println!(
        "load + validate + index of {} tenants: {:.3} s",
        config.tenants.len(),
        start.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group("routing_table");
    g.sample_size(10);
    g.bench_function("load_1m_tenants", |b| {
        b.iter(|| {
            let config = tenantgate::config::load_file(black_box(&path)).expect("loads");
            black_box(Router::new(&config));
        })
    });
    g.finish();
    let mut i = 0usize;
    c.bench_function("lookup_explicit", |b| {
        b.iter(|| {
            i = (i + 7919) % TENANTS;
            black_box(router.route(&format!("tenant-{i}")).ok())
        })
    });
    c.bench_function("lookup_hashed", |b| {
        b.iter(|| {
            i = (i + 7919) % TENANTS;
            black_box(router.route(&format!("unlisted-{i}")).ok())
        })
    });
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
