//! `agentmem daemon` and `agentmem stats` end to end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmem_client::ConnectOptions;
use agentmem_core::{Kind, Visibility};

/// Stops the daemon child on drop, also when the test fails.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemon_subcommand_serves_and_stats_prints_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let _daemon = Child(
        Command::new(env!("CARGO_BIN_EXE_agentmem"))
            .args(["daemon", "--log", "warn", "--ram-only", "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        if let Ok(c) = ConnectOptions::new("cli-agent").socket(&socket).connect() {
            break c;
        }
        assert!(Instant::now() < deadline, "agentmem daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.put(Kind::SystemPrompt, b"be brief", Visibility::Public)
        .unwrap();
    c.put(Kind::SystemPrompt, b"be brief", Visibility::Public)
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_agentmem"))
        .args(["stats", "--json", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dedup_hits"], 1);
    assert_eq!(v["agents"][0]["name"], "cli-agent");
    assert_eq!(
        v["agents"].as_array().unwrap().len(),
        1,
        "stats registers no agent"
    );
    assert!(v["kinds"][0]["logical_bytes"].as_u64().unwrap() == 16);

    let out = Command::new(env!("CARGO_BIN_EXE_agentmem"))
        .arg("stats")
        .env("AGENTMEM_SOCKET", &socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("system_prompt")
            && text.contains("cli-agent")
            && text.contains("data: RAM only"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_agentmem"))
        .args(["stats", "--socket"])
        .arg(dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to agentmemd") && err.contains("is the daemon running"),
        "{err}"
    );
}
