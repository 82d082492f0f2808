//! Zero-copy sharing: 100 client processes map the same 25 KB system
//! prompt, and the prompt's pages are held once.
//!
//! PSS is computed per page as the kernel does for `/proc/PID/smaps`
//! (page size ÷ number of mappings of the page), from `/proc/PID/pagemap`
//! and `/proc/kpagecount`: smaps itself prints PSS in whole kB per mapping,
//! and a 28 KiB mapping shared 100 ways is 0.28 kB per process, which it
//! prints as 0. The smaps figures are checked too: each process has the
//! whole prompt resident, and their PSS lines add up to at most one copy.

mod common;

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_client::ConnectOptions;
use agentmem_core::{ContentId, Kind, Visibility};
use common::Daemon;

const CHILDREN: usize = 100;
const PAGE: u64 = 4096;

/// Run as a child: map the prompt, touch it, say "ready", wait for stdin
/// to close. Does nothing in a normal test run.
#[test]
fn pss_child() {
    let Ok(socket) = std::env::var("AGENTMEM_PSS_SOCKET") else {
        return;
    };
    let id = ContentId::from_hex(&std::env::var("AGENTMEM_PSS_ID").unwrap()).unwrap();
    let name = std::env::var("AGENTMEM_PSS_NAME").unwrap();
    let mut c = ConnectOptions::new(name).socket(socket).connect().unwrap();
    let unit = c.get(&id).unwrap();
    assert!(unit.is_shared());
    let sum: u64 = unit.iter().map(|&b| u64::from(b)).sum();
    println!("\nready {} {sum}", unit.len());
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(unit);
}

/// The address range of the agentmem memfd mapping in a process, and the
/// Rss and Pss (kB) smaps reports for it.
fn memfd_mapping(pid: u32) -> Option<(u64, u64, u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut lines = smaps.lines();
    while let Some(l) = lines.next() {
        if !l.contains("/memfd:agentmem:") {
            continue;
        }
        let range = l.split_whitespace().next()?;
        let (a, b) = range.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        );
        let (mut rss, mut pss) = (None, None);
        for l in lines.by_ref() {
            let kb = || {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if l.starts_with("Rss:") {
                rss = kb();
            } else if l.starts_with("Pss:") {
                pss = kb();
            }
            if rss.is_some() && pss.is_some() {
                break;
            }
        }
        return Some((start, end, rss?, pss?));
    }
    None
}

/// Physical frame numbers of the pages `start..end` of a process (None
/// where not present, or where the kernel hides frames from non-root).
fn frames(pid: u32, start: u64, end: u64) -> Vec<Option<u64>> {
    let mut f = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
    f.seek(SeekFrom::Start(start / PAGE * 8)).unwrap();
    let n = ((end - start) / PAGE) as usize;
    let mut buf = vec![0u8; n * 8];
    f.read_exact(&mut buf).unwrap();
    buf.chunks(8)
        .map(|c| {
            let e = u64::from_le_bytes(c.try_into().unwrap());
            let pfn = e & ((1 << 55) - 1);
            (e >> 63 == 1 && pfn != 0).then_some(pfn)
        })
        .collect()
}

fn mapcount(pfn: u64) -> u64 {
    let mut f = std::fs::File::open("/proc/kpagecount").unwrap();
    f.seek(SeekFrom::Start(pfn * 8)).unwrap();
    let mut b = [0u8; 8];
    f.read_exact(&mut b).unwrap();
    u64::from_le_bytes(b)
}

#[test]
fn hundred_processes_hold_one_copy_of_a_shared_prompt() {
    common::raise_fd_limit();
    let d = Daemon::start("");
    let prompt = common::sample_prompt();
    assert!((25_000..26_000).contains(&prompt.len()), "{}", prompt.len());
    let mut owner = d.client("prompt-owner");
    let id = owner
        .put(Kind::SystemPrompt, &prompt, Visibility::Public)
        .unwrap();
    let expected_sum: u64 = prompt.iter().map(|&b| u64::from(b)).sum();

    let started = Instant::now();
    let mut children = Vec::new();
    for i in 0..CHILDREN {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "pss_child", "--nocapture", "--test-threads=1"])
            .env("AGENTMEM_PSS_SOCKET", &d.socket)
            .env("AGENTMEM_PSS_ID", id.to_hex())
            .env("AGENTMEM_PSS_NAME", format!("reader-{i}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        children.push((child, out));
    }
    for (child, out) in &mut children {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "child {} died",
                child.id()
            );
            // The harness may print "test pss_child ... " before it.
            if let Some(rest) = line.find("ready ").map(|i| &line[i + 6..]) {
                let mut it = rest.split_whitespace().map(|v| v.parse::<u64>().unwrap());
                assert_eq!(it.next(), Some(prompt.len() as u64));
                assert_eq!(it.next(), Some(expected_sum), "child read other bytes");
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "children too slow"
        );
    }

    let pages = (prompt.len() as u64).div_ceil(PAGE);
    let one_copy = pages * PAGE;
    let mut smaps_pss_kb = 0;
    let mut exact_pss = 0f64;
    let mut distinct = std::collections::HashSet::new();
    let mut hidden = false;
    for (child, _) in &children {
        let (start, end, rss_kb, pss_kb) =
            memfd_mapping(child.id()).expect("the child maps the memfd segment");
        assert_eq!(end - start, one_copy);
        assert_eq!(
            rss_kb * 1024,
            one_copy,
            "the whole prompt is resident in each child"
        );
        smaps_pss_kb += pss_kb;
        for pfn in frames(child.id(), start, end) {
            match pfn {
                Some(pfn) => {
                    distinct.insert(pfn);
                    exact_pss += PAGE as f64 / mapcount(pfn).max(1) as f64;
                }
                None => hidden = true,
            }
        }
    }
    println!(
        "{CHILDREN} processes map a {} byte prompt ({pages} pages, one copy = {one_copy} bytes): \
         summed smaps Pss = {smaps_pss_kb} kB (whole kB per mapping); \
         PSS from pagemap/kpagecount = {exact_pss:.0} bytes ({:.3} copies); distinct frames = {}",
        prompt.len(),
        exact_pss / one_copy as f64,
        distinct.len()
    );
    assert!(
        smaps_pss_kb * 1024 <= one_copy,
        "smaps PSS sums to more than one copy"
    );
    if hidden {
        println!(
            "SKIP exact PSS: /proc/PID/pagemap hides frame numbers (run as root to check them)"
        );
    } else {
        assert_eq!(
            distinct.len() as u64,
            pages,
            "all processes map the same physical pages"
        );
        assert!(
            (exact_pss - one_copy as f64).abs() <= 0.10 * one_copy as f64,
            "total PSS {exact_pss} is not within 10% of one copy ({one_copy})"
        );
    }
    for (mut child, _) in children {
        drop(child.stdin.take());
        let st = child.wait().unwrap();
        assert!(st.success());
    }
}
