//! End-to-end tests of the supervisor. They need root, cgroups, zswap and
//! swap; each skips with a printed reason where the machine lacks them.
//! Every test that changes system settings restores them through a Drop
//! guard, so they are restored on failure too. The tests that change
//! system-wide settings run one at a time (a shared lock).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentmem_supervisor::agent::{self, AgentOptions, StateDir};
use agentmem_supervisor::cgroup::{AgentCgroup, CgroupLayout};
use agentmem_supervisor::daemon::{self, Daemon, Request};
use agentmem_supervisor::pageset::PageSet;
use agentmem_supervisor::procfs;
use agentmem_supervisor::setup::{self, Profile};
use agentmem_supervisor::supervisor::{Config, Prefetch, Supervisor};
use agentmem_supervisor::sys::{self, Advice, Pidfd};

static SYSTEM: Mutex<()> = Mutex::new(());

fn skip(why: &str) {
    eprintln!("SKIPPED: {why}");
}

fn system_lock() -> std::sync::MutexGuard<'static, ()> {
    SYSTEM.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reverts an applied profile when dropped (also when the test fails).
struct ProfileGuard {
    state: PathBuf,
}

impl Drop for ProfileGuard {
    fn drop(&mut self) {
        if let Err(e) = setup::revert(&self.state, |_| {}) {
            eprintln!("could not revert the test profile: {e}");
        }
    }
}

/// Writes a sysfs setting and writes the old value back when dropped.
struct SettingGuard {
    path: PathBuf,
    old: String,
}

impl SettingGuard {
    fn set(path: &Path, value: &str) -> SettingGuard {
        let old = setup::read_setting(path).unwrap();
        std::fs::write(path, value).unwrap();
        SettingGuard {
            path: path.into(),
            old,
        }
    }
}

impl Drop for SettingGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.old) {
            eprintln!("could not restore {}: {e}", self.path.display());
        }
    }
}

/// Applies the agent profile with a small swap file in `dir`, or says why not.
fn apply_profile(dir: &Path, swap_mb: u64) -> Result<ProfileGuard, String> {
    if !sys::is_root() {
        return Err("needs root".into());
    }
    if !Path::new("/sys/module/zswap/parameters/enabled").exists()
        || !Path::new("/sys/kernel/mm/ksm/run").exists()
    {
        return Err("the kernel lacks zswap or KSM".into());
    }
    let profile = Profile {
        swap_file: dir.join("swapfile"),
        swap_size: swap_mb << 20,
        ..Profile::default()
    };
    let plan = setup::plan(&profile).map_err(|e| e.to_string())?;
    let guard = ProfileGuard {
        state: dir.join("setup-state.json"),
    };
    match setup::apply(&plan, &guard.state, |_| {}) {
        Ok(_) => Ok(guard),
        Err(e) => Err(format!(
            "applying the profile failed (swap files may be unsupported here): {e}"
        )),
    }
}

#[test]
fn setup_apply_then_revert_leaves_every_setting_as_it_was() {
    let _l = system_lock();
    let dir = tempfile::tempdir().unwrap();
    let before = setup::snapshot();
    {
        let _guard = match apply_profile(dir.path(), 64) {
            Ok(g) => g,
            Err(why) => return skip(&why),
        };
        assert_eq!(
            setup::read_setting(Path::new("/sys/module/zswap/parameters/enabled")).unwrap(),
            "Y"
        );
        assert_eq!(
            setup::read_setting(Path::new("/sys/kernel/mm/ksm/run")).unwrap(),
            "1"
        );
        assert!(
            setup::swap_areas()
                .iter()
                .any(|a| a.path == dir.path().join("swapfile")),
            "the swap file is on"
        );
        assert_ne!(setup::snapshot(), before, "apply changed something");
        // A second apply is refused: its revert would lose the first's record.
        let plan = setup::plan(&Profile::default()).unwrap();
        assert!(setup::apply(&plan, &dir.path().join("setup-state.json"), |_| {}).is_err());
    }
    assert_eq!(
        setup::snapshot(),
        before,
        "revert restored every setting and swap area"
    );
    assert!(
        !dir.path().join("swapfile").exists(),
        "the swap file was removed"
    );
    assert!(!dir.path().join("setup-state.json").exists());
}

/// Test agents and their cgroups, killed and removed when dropped.
struct Agents {
    children: Vec<(Child, AgentCgroup)>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (c, cg) in &mut self.children {
            let _ = cg.thaw();
            let _ = c.kill();
            let _ = c.wait();
            cg.remove();
        }
    }
}

fn ask(sock: &mut UnixStream, what: &str) -> String {
    writeln!(sock, "{what}").unwrap();
    let mut line = String::new();
    BufReader::new(sock.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn idle_agents_are_paged_out_frozen_and_resumed_with_correct_answers() {
    let _l = system_lock();
    if CgroupLayout::detect().is_err() {
        return skip("no usable cgroup hierarchy with memory and freezer");
    }
    let dir = tempfile::tempdir().unwrap();
    let _profile = match apply_profile(dir.path(), 512) {
        Ok(g) => g,
        Err(why) => return skip(&why),
    };
    let state = StateDir::new(dir.path().join("state"));
    let mut agents = Agents {
        children: Vec::new(),
    };
    let mut socks = Vec::new();
    let tag = std::process::id();
    for i in 0..2 {
        let opts = AgentOptions {
            name: format!("t{tag}-{i}"),
            tenant: None,
            importance: 0,
        };
        let sock = dir.path().join(format!("a{i}.sock"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentmem-test-agent"));
        cmd.args([
            "--socket",
            sock.to_str().unwrap(),
            "--index",
            &i.to_string(),
            "--heap-mb",
            "48",
        ])
        .stdout(Stdio::piped());
        let (cg, ksm) = agent::prepare_run(&state, &opts, &mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        agent::register(&state, &opts, child.id() as i32, cg.clone(), ksm).unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        assert!(
            cg.procs().contains(&(child.id() as i32)),
            "the agent runs in its cgroup"
        );
        if ksm {
            let ks = std::fs::read_to_string(format!("/proc/{}/ksm_stat", child.id())).unwrap();
            assert!(
                ks.contains("ksm_merge_any: yes"),
                "PR_SET_MEMORY_MERGE survived exec: {ks}"
            );
        }
        agents.children.push((child, cg));
        socks.push(UnixStream::connect(&sock).unwrap());
    }
    let pids: Vec<i32> = agents.children.iter().map(|(c, _)| c.id() as i32).collect();
    let verify: Vec<String> = socks.iter_mut().map(|s| ask(s, "verify")).collect();
    let render: Vec<String> = socks.iter_mut().map(|s| ask(s, "render")).collect();
    let unmanaged: Vec<u64> = pids
        .iter()
        .map(|&p| procfs::mem_usage(p).unwrap().pss_bytes)
        .collect();

    let cfg = Config {
        idle_threshold: Duration::from_secs(2),
        min_threshold: Duration::from_secs(1),
        sample_every: Duration::from_secs(1),
        ..Config::default()
    };
    let daemon = Daemon::start(
        Supervisor::new(cfg, state.clone()).unwrap(),
        Duration::from_millis(250),
    )
    .unwrap();
    let status = || {
        daemon::request(&state, &Request::Status)
            .unwrap()
            .status
            .unwrap()
    };
    wait_for(
        "both agents to be paged out",
        Duration::from_secs(40),
        || {
            status()
                .agents
                .iter()
                .filter(|a| a.state == "reclaimed")
                .count()
                == 2
        },
    );
    // The test agent's timer refaults a few pages while idle: they are
    // learned as its idle working set (left resident at the next page-out).
    wait_for(
        "the idle working set to be learned",
        Duration::from_secs(15),
        || {
            let l = state.load_learned(&format!("t{tag}-0"));
            !l.idle_ws.is_empty() && l.idle_ws.bytes() < unmanaged[0] / 10
        },
    );
    for (i, &p) in pids.iter().enumerate() {
        let pss = procfs::mem_usage(p).unwrap().pss_bytes;
        assert!(
            pss * 5 <= unmanaged[i],
            "agent {i}: idle PSS {pss} is not at most 20% of its unmanaged PSS {}",
            unmanaged[i]
        );
    }

    // Resume agent 0: correct answers, and its memory comes back.
    daemon::request(
        &state,
        &Request::Resume {
            name: format!("t{tag}-0"),
            prefetch: Prefetch::WorkingSet,
        },
    )
    .unwrap();
    assert_eq!(ask(&mut socks[0], "render"), render[0]);
    assert_eq!(ask(&mut socks[0], "verify"), verify[0]);
    let back = procfs::mem_usage(pids[0]).unwrap().pss_bytes;
    assert!(
        back * 10 >= unmanaged[0] * 8,
        "PSS came back: {back} of {}",
        unmanaged[0]
    );

    // Pause agent 1 without page-out: frozen, no answer and no CPU until resumed.
    daemon::request(
        &state,
        &Request::Pause {
            name: format!("t{tag}-1"),
            page_out: false,
            deep: false,
        },
    )
    .unwrap();
    assert!(agents.children[1].1.is_frozen());
    let cpu0 = procfs::stat(pids[1]).unwrap().cpu_ticks;
    writeln!(socks[1], "render").unwrap();
    socks[1]
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut buf = [0u8; 64];
    let r = socks[1].read(&mut buf);
    assert!(r.is_err(), "a frozen agent answered: {r:?}");
    assert_eq!(
        procfs::stat(pids[1]).unwrap().cpu_ticks,
        cpu0,
        "a frozen agent used CPU"
    );
    assert_eq!(status().agents[1].state, "paused");
    daemon::request(
        &state,
        &Request::Resume {
            name: format!("t{tag}-1"),
            prefetch: Prefetch::All,
        },
    )
    .unwrap();
    assert!(!agents.children[1].1.is_frozen());
    socks[1]
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(socks[1].try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        render[1],
        "the request sent while frozen is answered after thaw"
    );
    assert_eq!(ask(&mut socks[1], "verify"), verify[1]);

    // Pause with page-out, then a restarted supervisor re-adopts both agents
    // and still knows agent 1 is paused.
    daemon::request(
        &state,
        &Request::Pause {
            name: format!("t{tag}-1"),
            page_out: true,
            deep: true,
        },
    )
    .unwrap();
    drop(daemon);
    let sup = Supervisor::new(Config::default(), state.clone()).unwrap();
    assert_eq!(sup.names().len(), 2);
    let daemon = Daemon::start(sup, Duration::from_millis(250)).unwrap();
    let st = status();
    assert_eq!(st.agents[1].state, "paused");
    assert!(
        st.agents[1].swap_bytes * 10 >= unmanaged[1] * 8,
        "paused agent is paged out"
    );
    daemon::request(
        &state,
        &Request::Resume {
            name: format!("t{tag}-1"),
            prefetch: Prefetch::WorkingSet,
        },
    )
    .unwrap();
    assert_eq!(ask(&mut socks[1], "verify"), verify[1]);
    assert!(
        daemon::request(
            &state,
            &Request::Pause {
                name: "nobody".into(),
                page_out: true,
                deep: true,
            }
        )
        .is_err(),
        "unknown agents are refused"
    );
    drop(daemon);
}

#[test]
fn process_madvise_splits_long_ranges_and_skips_vanished_ones() {
    // Advising this test process itself needs no privilege.
    let len: usize = 3 << 30;
    // SAFETY: a fresh private anonymous reservation; nothing else refers to it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let b = base as u64;
    // Touch two pages, then unmap a hole in the middle (a range that vanished).
    // SAFETY: both addresses are inside the mapping made above.
    unsafe {
        *(base as *mut u8) = 1;
        *((base as *mut u8).add(4096)) = 2;
    }
    let hole = b + (1 << 30);
    // SAFETY: unmaps 1 MiB inside the mapping made above, used by nothing.
    let unmapped = unsafe { libc::munmap(hole as *mut libc::c_void, 1 << 20) };
    assert_eq!(unmapped, 0);
    let set = PageSet::from_ranges(vec![
        (b, hole),
        (hole, hole + (1 << 20)),
        (hole + (1 << 20), b + len as u64),
    ]);
    let me = Pidfd::open(std::process::id() as i32).unwrap();
    let out = sys::advise(&me, &set, Advice::WillNeed).unwrap();
    assert!(
        out.calls >= 2,
        "a 3 GiB range needs more than one call: {out:?}"
    );
    assert!(
        out.skipped_ranges >= 1 || out.bytes < len as u64,
        "the unmapped hole was noticed: {out:?}"
    );
    assert!(!out.process_gone);
    let present = sys::scan_pagemap(
        std::process::id() as i32,
        &PageSet::from_ranges(vec![(b, b + (1 << 20))]),
        |e| e.present(),
    )
    .unwrap();
    assert_eq!(
        present.ranges(),
        &[(b, b + 8192)],
        "pagemap shows exactly the touched pages"
    );
    // SAFETY: unmaps what is left of the mapping made above.
    unsafe {
        libc::munmap(base, hole as usize - b as usize);
        libc::munmap(
            (hole + (1 << 20)) as *mut libc::c_void,
            len - (1 << 30) - (1 << 20),
        );
    }
}

#[test]
fn adopt_moves_a_running_process_into_its_own_cgroup() {
    if !sys::is_root() {
        return skip("needs root");
    }
    if CgroupLayout::detect().is_err() {
        return skip("no usable cgroup hierarchy with memory and freezer");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id() as i32;
    let opts = AgentOptions {
        name: format!("adopt{}", std::process::id()),
        tenant: Some("t".into()),
        importance: 2,
    };
    let rec = agent::adopt(&state, &opts, pid);
    let cleanup = |c: &mut Child| {
        let _ = c.kill();
        let _ = c.wait();
    };
    let rec = match rec {
        Ok(r) => r,
        Err(e) => {
            cleanup(&mut child);
            panic!("adopt failed: {e}");
        }
    };
    let in_cgroup = rec.cgroup.contains(pid) && rec.cgroup.procs().contains(&pid);
    let listed = state
        .records()
        .iter()
        .any(|r| r.pid == pid && r.importance == 2);
    let twice = agent::adopt(&state, &opts, pid).is_err();
    let bad = agent::adopt(
        &state,
        &AgentOptions {
            name: "other".into(),
            tenant: None,
            importance: 0,
        },
        1,
    )
    .is_err();
    cleanup(&mut child);
    rec.cgroup.remove();
    assert!(in_cgroup, "the adopted process is in its cgroup");
    assert!(listed, "the agent is recorded");
    assert!(!rec.ksm, "sleep did not ask for KSM merging");
    assert!(twice, "a live agent's name cannot be taken twice");
    assert!(bad, "pid 1 is never adopted");
}

/// Starts a small test agent under `state` as `name`; returns it and its cgroup.
fn start_small_agent(state: &StateDir, dir: &Path, name: &str) -> (Child, AgentCgroup) {
    let opts = AgentOptions {
        name: name.into(),
        tenant: None,
        importance: 0,
    };
    let sock = dir.join(format!("{name}.sock"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentmem-test-agent"));
    cmd.args(["--socket", sock.to_str().unwrap(), "--heap-mb", "8"])
        .stdout(Stdio::piped());
    let (cg, ksm) = agent::prepare_run(state, &opts, &mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    agent::register(state, &opts, child.id() as i32, cg.clone(), ksm).unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    (child, cg)
}

#[test]
fn paused_agents_can_be_ended_and_leave_no_cgroup_or_state_behind() {
    let _l = system_lock();
    if !sys::is_root() {
        return skip("needs root");
    }
    if CgroupLayout::detect().is_err() {
        return skip("no usable cgroup hierarchy with memory and freezer");
    }
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let tag = std::process::id();
    let (a, b) = (format!("k{tag}-a"), format!("k{tag}-b"));
    let mut agents = Agents {
        children: vec![
            start_small_agent(&state, dir.path(), &a),
            start_small_agent(&state, dir.path(), &b),
        ],
    };
    let daemon = Daemon::start(
        Supervisor::new(Config::default(), state.clone()).unwrap(),
        Duration::from_millis(100),
    )
    .unwrap();
    for name in [&a, &b] {
        let pause = Request::Pause {
            name: name.clone(),
            page_out: false,
            deep: false,
        };
        daemon::request(&state, &pause).unwrap();
    }
    assert!(agents.children[0].1.is_frozen() && agents.children[1].1.is_frozen());

    // `kill`: signalled while frozen, thawed, gone, its cgroup removed.
    let r = daemon::request(
        &state,
        &Request::Kill {
            name: a.clone(),
            signal: "TERM".into(),
            grace_ms: 5000,
        },
    )
    .unwrap();
    assert_eq!(r.signalled, Some(1));
    // Answered once it exited (a zombie of ours, out of its cgroup).
    let exit = agents.children[0].0.try_wait().unwrap();
    assert!(
        exit.is_some_and(|s| !s.success()),
        "the agent ended by signal: {exit:?}"
    );
    assert!(
        agents.children[0].1.dirs().iter().all(|d| !d.exists()),
        "the killed agent's cgroup is removed"
    );

    // A SIGKILL from outside to a frozen agent: pending until thawed; the
    // supervisor sees it pending, thaws it, and forgets it once gone.
    let pid_b = agents.children[1].0.id() as i32;
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid_b, libc::SIGKILL) }, 0);
    wait_for("the frozen agent to exit", Duration::from_secs(10), || {
        let _ = agents.children[1].0.try_wait();
        daemon::request(&state, &Request::Status)
            .unwrap()
            .status
            .unwrap()
            .agents
            .is_empty()
    });
    assert!(
        agents.children[1].1.dirs().iter().all(|d| !d.exists()),
        "the exited agent's cgroup is removed"
    );
    drop(daemon);
    assert!(
        state.remove_if_unused(),
        "nothing is left in the state directory"
    );
    assert!(!state.root().exists());
    agents.children.clear();
}

#[test]
fn a_page_out_to_the_swap_file_leaves_no_swap_cache() {
    let _l = system_lock();
    if CgroupLayout::detect().is_err() {
        return skip("no usable cgroup hierarchy with memory and freezer");
    }
    let dir = tempfile::tempdir().unwrap();
    let _profile = match apply_profile(dir.path(), 256) {
        Ok(g) => g,
        Err(why) => return skip(&why),
    };
    // Every page to the swap file, the path that leaves swap cache behind
    // (zswap stores synchronously and leaves none). The profile records only
    // what it changed, so this setting gets its own guard.
    let _zswap = SettingGuard::set(Path::new("/sys/module/zswap/parameters/enabled"), "N");
    let state = StateDir::new(dir.path().join("state"));
    let name = format!("sc{}", std::process::id());
    let opts = AgentOptions {
        name: name.clone(),
        tenant: None,
        importance: 0,
    };
    let sock = dir.path().join("a.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentmem-test-agent"));
    cmd.args(["--socket", sock.to_str().unwrap(), "--heap-mb", "48"])
        .stdout(Stdio::piped());
    let (cg, ksm) = agent::prepare_run(&state, &opts, &mut cmd).unwrap();
    let mut child = cmd.spawn().unwrap();
    agent::register(&state, &opts, child.id() as i32, cg.clone(), ksm).unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    let agents = Agents {
        children: vec![(child, cg.clone())],
    };
    let before = cg.memory().unwrap();
    let mut sup = Supervisor::new(Config::default(), state.clone()).unwrap();
    let o = sup.pause(&name, true, true, Instant::now()).unwrap();
    let after = cg.memory().unwrap();
    assert!(
        after.swap_cache * 10 <= before.usage,
        "swap cache left after a page-out: {} of the {} the cgroup held",
        after.swap_cache,
        before.usage
    );
    assert!(
        o.freed_bytes * 10 >= before.usage * 7,
        "the page-out freed {} of the {} bytes the cgroup held",
        o.freed_bytes,
        before.usage
    );
    assert!(
        o.advised_bytes >= o.freed_bytes,
        "advised address space is reported apart from memory freed: {o:?}"
    );
    sup.resume(&name, Prefetch::None, Instant::now()).unwrap();
    drop(sup);
    agents.children[0].1.thaw().unwrap();
}

/// Sends `lines` to the socket at `sock` as user `uid` (through python3, so
/// the kernel's peer credentials are really that user's); returns the answers.
fn ask_as(uid: u32, sock: &Path, lines: &[&str]) -> Option<Vec<String>> {
    use std::os::unix::process::CommandExt;
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
for l in sys.argv[2:]:
    f.write(l + "\n"); f.flush(); print(f.readline().strip())
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(sock)
        .args(lines)
        .uid(uid)
        .gid(uid)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "python3 as uid {uid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect(),
    )
}

#[test]
fn the_control_socket_lets_anyone_read_and_only_owners_act() {
    use std::os::unix::fs::PermissionsExt;
    let _l = system_lock();
    if !sys::is_root() {
        return skip("needs root (to connect as another user)");
    }
    if CgroupLayout::detect().is_err() {
        return skip("no usable cgroup hierarchy with memory and freezer");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = StateDir::new(dir.path().join("state"));
    let name = format!("p{}", std::process::id());
    let _agents = Agents {
        children: vec![start_small_agent(&state, dir.path(), &name)],
    };
    let daemon = Daemon::start(
        Supervisor::new(Config::default(), state.clone()).unwrap(),
        Duration::from_millis(100),
    )
    .unwrap();
    let sock = state.socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o666,
        "the socket's mode is explicit, not the umask's"
    );
    let pause = format!(r#"{{"op":"pause","name":"{name}","page_out":false}}"#);
    let Some(answers) = ask_as(65534, &sock, &[r#"{"op":"status"}"#, &pause]) else {
        return skip("python3 is not available");
    };
    assert!(
        answers[0].starts_with(r#"{"ok":true"#) && answers[0].contains(&name),
        "another user may read the status: {}",
        answers[0]
    );
    assert!(
        answers[1].contains(r#""ok":false"#) && answers[1].contains("another user"),
        "another user may not pause root's agent: {}",
        answers[1]
    );
    assert!(!_agents.children[0].1.is_frozen());
    // Over-long lines are refused and the connection closed.
    let mut c = UnixStream::connect(&sock).unwrap();
    let long = format!(
        r#"{{"op":"status","x":"{}"}}"#,
        "y".repeat(daemon::MAX_LINE)
    );
    let answer = ask(&mut c, &long);
    assert!(answer.contains("longer than"), "{answer}");
    // Root may act on it.
    let mut c = UnixStream::connect(&sock).unwrap();
    assert!(ask(&mut c, &pause).starts_with(r#"{"ok":true"#));
    assert!(_agents.children[0].1.is_frozen());
    drop(daemon);
}
