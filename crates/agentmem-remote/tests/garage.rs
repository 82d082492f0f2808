//! The remote tier against a real 3-node Garage cluster on loopback
//! (replication factor 3), started by `scripts/garage-cluster.sh`.
//!
//! Skipped, saying so, when no garage binary is found ($GARAGE_BIN,
//! `garage` on PATH, or the script's cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentmem_remote::object_store::aws::AmazonS3Builder;
use agentmem_remote::object_store::{ObjectStoreExt, PutPayload};
use agentmem_remote::{
    BlockingRemote, PutOutcome, RemoteConfig, RemoteError, RemoteRecord, RetryPolicy,
};
use bytes::Bytes;

fn garage_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GARAGE_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("garage"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        // Where scripts/garage-cluster.sh installs it.
        let cache = std::env::var_os("GARAGE_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .map(|c| c.join("agentmem/garage"))
            })?;
        Some(cache.join("bin/garage")).filter(|p| p.is_file())
    })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/garage-cluster.sh")
}

/// A running cluster; stopped and removed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    garage: PathBuf,
    env: HashMap<String, String>,
}

impl Cluster {
    fn start(garage: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        // Ports away from the script's default, different per process.
        let mut last = String::new();
        for attempt in 0..5u32 {
            let base = 20_000 + (std::process::id() * 7 + attempt * 131) % 2_000 * 20;
            let out = Command::new("bash")
                .arg(script())
                .args(["start", "--dir"])
                .arg(dir.path())
                .args(["--base-port", &base.to_string()])
                .env("GARAGE_BIN", &garage)
                .output()
                .unwrap();
            if out.status.success() {
                let text = std::fs::read_to_string(dir.path().join("env")).unwrap();
                let env = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("export "))
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                    .collect();
                return Cluster { dir, garage, env };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("garage-cluster.sh start failed 5 times; last error:\n{last}");
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .env("GARAGE_BIN", &self.garage)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "garage-cluster.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn config(&self) -> RemoteConfig {
        RemoteConfig::from_lookup(|k| self.env.get(k).cloned())
            .unwrap()
            .retry(RetryPolicy {
                max_retries: 4,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                retry_timeout: Duration::from_secs(10),
            })
            .request_timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .env("GARAGE_BIN", &self.garage)
            .output();
    }
}

fn record(n: u32, len: usize) -> RemoteRecord {
    let id = *blake3::hash(&n.to_le_bytes()).as_bytes();
    RemoteRecord {
        id,
        encoding: n % 7,
        bytes: Bytes::from(
            (0..len)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(n) as u8)
                .collect::<Vec<_>>(),
        ),
    }
}

/// One test, one cluster: the scenarios run in order because the last ones
/// kill nodes.
#[test]
fn against_a_three_node_garage_cluster() {
    let Some(garage) = garage_bin() else {
        eprintln!(
            "SKIPPED: no garage binary (set GARAGE_BIN, put garage on PATH, or run \
             scripts/garage-cluster.sh install); the remote tier was not tested against Garage"
        );
        return;
    };
    let cluster = Cluster::start(garage);
    let cfg = cluster.config();
    let remote = BlockingRemote::connect(&cfg).unwrap();

    // Round trip, sizes from empty to 4 MiB; put-if-absent.
    for (n, len) in [
        (0u32, 0usize),
        (1, 1),
        (2, 100),
        (3, 64 << 10),
        (4, 4 << 20),
    ] {
        let r = record(n, len);
        assert!(!remote.contains(&r.id).unwrap());
        assert_eq!(remote.put(&r).unwrap(), PutOutcome::Uploaded);
        assert_eq!(remote.put(&r).unwrap(), PutOutcome::AlreadyPresent);
        assert!(remote.contains(&r.id).unwrap());
        assert_eq!(remote.get(&r.id).unwrap(), r, "size {len}");
    }
    assert!(matches!(
        remote.get(&record(99, 1).id),
        Err(RemoteError::NotFound { .. })
    ));
    remote.delete(&record(2, 100).id).unwrap();
    assert!(!remote.contains(&record(2, 100).id).unwrap());

    // A foreign object under our key: a typed error, and left alone.
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        let s = AmazonS3Builder::new()
            .with_endpoint(&cluster.env["AGENTMEM_S3_ENDPOINT"])
            .with_region(&cluster.env["AGENTMEM_S3_REGION"])
            .with_bucket_name(&cluster.env["AGENTMEM_S3_BUCKET"])
            .with_access_key_id(&cluster.env["AGENTMEM_S3_ACCESS_KEY_ID"])
            .with_secret_access_key(&cluster.env["AGENTMEM_S3_SECRET_ACCESS_KEY"])
            .with_allow_http(true)
            .build()
            .unwrap();
        let foreign = record(50, 10);
        let key = remote.client().unit_key(&foreign.id);
        rt.block_on(s.put(&key, PutPayload::from_static(b"someone else's data")))
            .unwrap();
        let got = remote.get(&foreign.id);
        assert!(matches!(got, Err(RemoteError::Foreign { .. })), "{got:?}");
        let put = remote.put(&foreign);
        assert!(matches!(put, Err(RemoteError::Foreign { .. })), "{put:?}");
        let still = rt
            .block_on(async { s.get(&key).await.unwrap().bytes().await })
            .unwrap();
        assert_eq!(&still[..], b"someone else's data");
    }

    // Refused credentials: a wrong secret, an unknown key.
    for bad in [
        cfg.clone()
            .credentials(&cluster.env["AGENTMEM_S3_ACCESS_KEY_ID"], "f".repeat(64)),
        cfg.clone()
            .credentials("GK0123456789abcdef01234567", "f".repeat(64)),
    ] {
        let r = BlockingRemote::connect(&bad).unwrap();
        let got = r.get(&record(1, 1).id);
        assert!(
            matches!(got, Err(RemoteError::CredentialsRefused { .. })),
            "{got:?}"
        );
        let put = r.put(&record(60, 10));
        assert!(
            matches!(put, Err(RemoteError::CredentialsRefused { .. })),
            "{put:?}"
        );
    }

    // One node killed mid-run: quorum (2 of 3) keeps every operation
    // working. The client talks to node 1; node 3 dies.
    let done = Arc::new(AtomicUsize::new(0));
    let killer = {
        let done = done.clone();
        let dir = cluster.dir.path().to_path_buf();
        let garage = cluster.garage.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while done.load(Ordering::Relaxed) < 40 && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let out = Command::new("bash")
                .arg(script())
                .args(["kill-node", "3", "--dir"])
                .arg(&dir)
                .env("GARAGE_BIN", garage)
                .output()
                .unwrap();
            assert!(out.status.success());
        })
    };
    let mut failed = Vec::new();
    let ops = 150u32;
    for n in 100..100 + ops {
        let r = record(n, 1000 + n as usize);
        if let Err(e) = remote.put(&r) {
            failed.push(format!("put {n}: {e}"));
        }
        match remote.get(&r.id) {
            Ok(got) if got == r => {}
            Ok(_) => failed.push(format!("get {n}: wrong bytes")),
            Err(e) => failed.push(format!("get {n}: {e}")),
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    killer.join().unwrap();
    for n in 100..100 + ops {
        match remote.get(&record(n, 0).id) {
            Ok(got) if got.bytes.len() == 1000 + n as usize => {}
            other => failed.push(format!("re-read {n}: {other:?}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed operations with one node down:\n{}",
        failed.len(),
        failed.join("\n")
    );
    eprintln!(
        "one node killed after 40 of {ops} put+get pairs: 0 failed of {} operations",
        ops * 3
    );

    // Two nodes down, node 1 up: no quorum, a typed 5xx error.
    cluster.run(&["kill-node", "2"]);
    let t0 = Instant::now();
    let got = remote.get(&record(100, 0).id);
    assert!(
        matches!(
            got,
            Err(RemoteError::Unavailable { .. } | RemoteError::Unreachable { .. })
        ),
        "{got:?}"
    );
    let put = remote.put(&record(500, 10));
    assert!(put.as_ref().is_err_and(|e| e.is_transient()), "{put:?}");
    eprintln!("two nodes down: {got:?} after {:?}", t0.elapsed());

    // All nodes down: unreachable, within the retry budget.
    cluster.run(&["kill-node", "1"]);
    let t0 = Instant::now();
    for res in [
        remote.get(&record(100, 0).id).map(drop),
        remote.put(&record(501, 10)).map(drop),
        remote.contains(&record(100, 0).id).map(drop),
    ] {
        assert!(
            matches!(res, Err(RemoteError::Unreachable { .. })),
            "{res:?}"
        );
    }
    let all_down = t0.elapsed();
    eprintln!("all nodes down: 3 operations failed as Unreachable in {all_down:?}");
    assert!(all_down < Duration::from_secs(90), "{all_down:?}");

    // Back up: the data is still there.
    for n in 1..=3 {
        cluster.run(&["start-node", &n.to_string()]);
    }
    let t0 = Instant::now();
    let r = record(3, 64 << 10);
    loop {
        match remote.get(&r.id) {
            Ok(got) => {
                assert_eq!(got, r);
                break;
            }
            Err(e) if e.is_transient() && t0.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("after restarting every node: {e}"),
        }
    }
}
