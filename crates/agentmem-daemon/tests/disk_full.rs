//! The data directory's filesystem fills up (a 4 MiB tmpfs): writes are
//! answered `NoSpace` naming what is full, the daemon logs the state
//! change once rather than per refused write, reads keep working, and
//! once space returns writes succeed again. Needs root (to mount a
//! tmpfs); skips with a message otherwise. The mount is removed on exit,
//! also on failure. Ignored until the store keeps the errno of a failed
//! redo-log write (see the attribute); the daemon's mapping by type is
//! tested in `service.rs`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use agentmem_client::ErrorCode;
use agentmem_core::{Kind, Visibility};
use common::Daemon;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!("agentmem-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x & 0xff) as u8
        })
        .collect()
}

#[test]
#[ignore = "the store's redo log replaces the first ENOSPC by an untyped \"failed earlier\" error and \
            stops writes until reopened (crates/agentmem-core/src/redo.rs, issue 14's store side); \
            run with --ignored once it keeps the errno and resumes"]
fn a_full_data_directory_is_a_state_not_a_flood() {
    let Some(fs) = Tmpfs::mount("4m") else {
        println!("SKIP: cannot mount a tmpfs here (needs root and mount permission)");
        return;
    };
    // Ballast to delete later, so that space can come back.
    let ballast = fs.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 1 << 20]).unwrap();
    let data = fs.0.join("data");
    let d = Daemon::start(&format!(
        "data_dir = {data:?}\n[store]\nram_budget = \"1 MiB\"\nhot_budget = \"256 KiB\""
    ));
    let mut c = d.client("filler");
    let first = c
        .put(Kind::ToolResult, &text(0, 64 * 1024), Visibility::Private)
        .unwrap();
    // Incompressible units pushed through a 1 MiB RAM budget spill to disk
    // until the 4 MiB filesystem is full.
    let mut full = None;
    let mut stored = vec![first];
    for i in 1..400 {
        match c.put(Kind::ToolResult, &text(i, 64 * 1024), Visibility::Private) {
            Ok(id) => stored.push(id),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("4 MiB of disk fills before 25 MiB are written");
    println!("refused after {} units: {e}", stored.len());
    assert_eq!(e.code(), Some(ErrorCode::NoSpace), "{e}");
    assert!(e.to_string().contains("data directory is full"), "{e}");
    // More refused writes: one log line for the state, not one each.
    for i in 0..20 {
        let _ = c.put(
            Kind::ToolResult,
            &text(1000 + i, 64 * 1024),
            Visibility::Private,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = d.log_text();
    let refusals = log.matches("writes refused").count();
    println!("daemon log lines: {}", log.lines().count());
    assert_eq!(refusals, 1, "{log}");
    // Reads keep working while full.
    assert_eq!(c.get(&first).unwrap().to_vec(), text(0, 64 * 1024));
    let released = c.release(&stored[stored.len() - 1]);
    println!("release while full: {released:?}");
    // Space returns: writes succeed again without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut again = c.put(Kind::Blob, b"after", Visibility::Private);
    while again.is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        again = c.put(Kind::Blob, b"after", Visibility::Private);
    }
    // Resuming needs the store to retry its spill (the store's side of
    // issue 14); reported here, not asserted.
    println!(
        "a put after 1 MiB was freed: {:?}",
        again.as_ref().map(|_| ())
    );
}
