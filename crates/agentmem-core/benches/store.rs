//! Store operations on real messages from the shared data set (or the
//! bundled sample), next to raw zstd level 1 on the same bytes.
//!
//! Run: `cargo bench -p agentmem-core --bench store`. Set `AGENTMEM_DATA` to
//! a data directory (default: `../shared/data` beside the repository, else
//! `data/sample`).

use std::hint::black_box;
use std::time::Duration;

use agentmem_core::prelude::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

#[path = "support/messages.rs"]
mod messages;
use messages::messages;

/// Per-operation latency percentiles (criterion reports means).
fn percentiles(name: &str, mut op: impl FnMut()) {
    let mut lat: Vec<Duration> = (0..50_000)
        .map(|_| {
            let t = std::time::Instant::now();
            op();
            t.elapsed()
        })
        .collect();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "latency {name}: p50 {:?} p99 {:?} p99.9 {:?} (50,000 ops)",
        p(0.5),
        p(0.99),
        p(0.999)
    );
}

fn one_kib_message(msgs: &[Vec<u8>]) -> Vec<u8> {
    msgs.iter()
        .min_by_key(|m| (m.len() as i64 - 1024).abs())
        .unwrap()
        .clone()
}

fn bench(c: &mut Criterion) {
    let all = messages(8000);
    let (warmup, msgs) = all.split_at(4000);
    let total: usize = msgs.iter().map(Vec::len).sum();
    let msg = one_kib_message(msgs);

    // A store that has already trained its dictionary (on other messages),
    // as any store has after its first megabyte: training is a one-off.
    let trained = |builder: StoreBuilder| {
        let s = builder.build().unwrap();
        let a = s
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        let warm = s
            .register_agent("w", &TenantId::new("t"), Importance::default())
            .unwrap();
        for m in warmup {
            let id = s
                .put(warm, Kind::ToolResult, m, Visibility::Private)
                .unwrap();
            s.release(warm, &id).unwrap();
        }
        (s, a)
    };

    let mut g = c.benchmark_group("store");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));

    // put: new content each time, into hot (compression happens on demotion).
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("put_new_hot", |b| {
        b.iter_batched(
            || trained(Store::builder().ram_budget(1 << 30).hot_budget(1 << 30)),
            |(s, a)| {
                for m in msgs {
                    s.put(a, Kind::ToolResult, m, Visibility::Private).unwrap();
                }
                s
            },
            BatchSize::PerIteration,
        )
    });
    // put with no hot budget: every unit is compressed (with the trained
    // dictionary once there is one) as it is stored.
    g.bench_function("put_new_compressed", |b| {
        b.iter_batched(
            || trained(Store::builder().hot_budget(0).compression_level(1)),
            |(s, a)| {
                for m in msgs {
                    s.put(a, Kind::ToolResult, m, Visibility::Private).unwrap();
                }
                s
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("raw_zstd_1_same_bytes", |b| {
        let mut cctx = zstd::bulk::Compressor::new(1).unwrap();
        b.iter(|| {
            for m in msgs {
                black_box(cctx.compress(m).unwrap());
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    {
        let s = Store::new().unwrap();
        let a = s
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        s.put(a, Kind::ToolResult, &msg, Visibility::Private)
            .unwrap();
        g.bench_function("put_dedup_hit_1k", |b| {
            b.iter(|| {
                s.put(a, Kind::ToolResult, black_box(&msg), Visibility::Private)
                    .unwrap()
            })
        });
    }
    {
        let s = Store::new().unwrap();
        let a = s
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        let mut conv = s.create_conversation(a).unwrap();
        let mut i = 0;
        g.bench_function("append_message", |b| {
            b.iter(|| {
                if i % 10_000 == 0 {
                    s.delete_conversation(conv).unwrap();
                    conv = s.create_conversation(a).unwrap();
                }
                s.append(conv, &msgs[i % msgs.len()]).unwrap();
                i += 1;
            })
        });
    }
    {
        let s = Store::new().unwrap();
        let a = s
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        let id = s
            .put(a, Kind::ToolResult, &msg, Visibility::Private)
            .unwrap();
        g.bench_function("get_hot_1k", |b| b.iter(|| s.get(black_box(&id)).unwrap()));
        percentiles("get_hot_1k", || {
            black_box(s.get(&id).unwrap());
        });
    }
    {
        // A paused agent's conversation: chunks are warm and stay warm on
        // read (nobody working holds them), so each read decodes.
        let s = Store::builder()
            .train_dictionaries_after(256 * 1024)
            .build()
            .unwrap();
        let a = s
            .register_agent("a", &TenantId::new("t"), Importance::default())
            .unwrap();
        let conv = s.create_conversation(a).unwrap();
        for m in msgs {
            s.append(conv, m).unwrap();
        }
        s.pause(a).unwrap();
        s.maintain(usize::MAX).unwrap();
        let n = s.conversation_len(conv).unwrap();
        let mut i = 0u64;
        g.bench_function("get_warm_message", |b| {
            b.iter(|| {
                i = (i + 7919) % n;
                s.read_messages(conv, i..i + 1).unwrap()
            })
        });
        percentiles("get_warm_message", || {
            i = (i + 7919) % n;
            black_box(s.read_messages(conv, i..i + 1).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
