//! Cold tier benchmarks: point gets and sustained puts on this log, and the
//! same workload on redb for the comparison in the crate docs.
//!
//! `cargo bench -p agentmem-cold --bench cold` prints criterion's figures
//! and then a latency distribution (p50/p99) of single gets, with the
//! segment files in the page cache and after dropping them from it.

use std::path::Path;
use std::time::{Duration, Instant};

use agentmem_cold::{DiskTier, Durability};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::{Rng, SeedableRng};

const RECORDS: u64 = 20_000;
/// A compressed 16 KiB conversation chunk is about 2.5 KiB.
const VALUE: usize = 2560;

fn key(i: u64) -> [u8; 32] {
    *blake3::hash(&i.to_le_bytes()).as_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0u8; VALUE];
    blake3::Hasher::new_keyed(&key(i))
        .finalize_xof()
        .fill(&mut v);
    v
}

fn fill(t: &DiskTier) {
    for i in 0..RECORDS {
        t.put(&key(i), 1, &value(i)).unwrap();
    }
    t.sync().unwrap();
}

/// Drop the directory's files from the page cache.
fn drop_cache(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let f = std::fs::File::open(e.unwrap().path()).unwrap();
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let t = DiskTier::open(dir.path()).unwrap();
    fill(&t);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);

    let mut g = c.benchmark_group("cold_get");
    g.throughput(Throughput::Bytes(VALUE as u64));
    g.bench_function("log", |b| {
        b.iter(|| t.get(&key(rng.random_range(0..RECORDS))).unwrap().unwrap())
    });
    let rdir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(rdir.path().join("db.redb")).unwrap();
    const TABLE: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("units");
    {
        let tx = db.begin_write().unwrap();
        {
            let mut tab = tx.open_table(TABLE).unwrap();
            for i in 0..RECORDS {
                tab.insert(&key(i)[..], &value(i)[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    g.bench_function("redb", |b| {
        b.iter(|| {
            let tx = db.begin_read().unwrap();
            let tab = tx.open_table(TABLE).unwrap();
            let v = tab
                .get(&key(rng.random_range(0..RECORDS))[..])
                .unwrap()
                .unwrap();
            v.value().len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("cold_put");
    g.throughput(Throughput::Bytes(VALUE as u64));
    g.sample_size(20);
    let payload = value(7);
    let mut n = RECORDS;
    g.bench_function("log_group_commit", |b| {
        b.iter(|| {
            n += 1;
            t.put(&key(n), 1, &payload).unwrap()
        })
    });
    g.bench_function("log_sync_each", |b| {
        b.iter(|| {
            n += 1;
            t.put_with(&key(n), 1, &payload, Durability::Sync).unwrap()
        })
    });
    g.bench_function("redb_commit_each", |b| {
        b.iter(|| {
            n += 1;
            let tx = db.begin_write().unwrap();
            {
                let mut tab = tx.open_table(TABLE).unwrap();
                tab.insert(&key(n)[..], &payload[..]).unwrap();
            }
            tx.commit().unwrap();
        })
    });
    g.throughput(Throughput::Bytes(100 * VALUE as u64));
    g.bench_function("redb_commit_per_100", |b| {
        b.iter_batched(
            || {
                (0..100)
                    .map(|_| {
                        n += 1;
                        key(n)
                    })
                    .collect::<Vec<_>>()
            },
            |keys| {
                let tx = db.begin_write().unwrap();
                {
                    let mut tab = tx.open_table(TABLE).unwrap();
                    for k in &keys {
                        tab.insert(&k[..], &payload[..]).unwrap();
                    }
                }
                tx.commit().unwrap();
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Latency distribution of single gets, as the figures ask for p99.
    for (name, cached) in [("page cache", true), ("dropped from page cache", false)] {
        let mut times = Vec::with_capacity(10_000);
        for _ in 0..10_000 {
            if !cached && times.len() % 100 == 0 {
                drop_cache(dir.path());
            }
            let k = key(rng.random_range(0..RECORDS));
            let s = Instant::now();
            let v = t.get(&k).unwrap().unwrap();
            times.push(s.elapsed());
            assert_eq!(v.1.len(), VALUE);
        }
        let (p50, p99) = percentiles(times);
        println!("cold get of one {VALUE}-byte record, {name}: p50 {p50:?}, p99 {p99:?}");
    }
    // Sustained write throughput over 100 MiB with group commit.
    let s = Instant::now();
    let total = 40_000u64;
    for i in 0..total {
        t.put(&key(1 << 40 | i), 1, &payload).unwrap();
    }
    t.sync().unwrap();
    let secs = s.elapsed().as_secs_f64();
    println!(
        "sustained puts: {total} x {VALUE} B in {secs:.2} s = {:.0} MiB/s, {:.0} puts/s (group commit, synced at the end)",
        (total as f64 * VALUE as f64) / secs / (1 << 20) as f64,
        total as f64 / secs
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
