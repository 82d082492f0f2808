//! The supervisor subcommands' plumbing: clear errors without a daemon or
//! with bad input, and a `setup` dry run that changes nothing.

mod common;

use common::agentmem;

#[test]
fn agent_commands_say_when_the_supervisor_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    for args in [
        vec!["ps", "--state-dir", d],
        vec!["pause", "x", "--state-dir", d],
        vec!["resume", "x", "--state-dir", d],
    ] {
        let (ok, _, err) = agentmem(&args);
        assert!(!ok, "{args:?} succeeded without a supervisor");
        assert!(
            err.contains("supervisor is not running") && err.contains("agentmem supervise"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_agent_names_and_prefetch_modes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ok, _, err) = agentmem(&["run", "--name", "a/b", "--state-dir", d, "--", "true"]);
    assert!(!ok);
    assert!(err.contains("not valid") || err.contains("root"), "{err}");
    let (ok, _, err) = agentmem(&["resume", "x", "--prefetch", "some", "--state-dir", d]);
    assert!(!ok);
    assert!(err.contains("expected working-set, all or none"), "{err}");
}

#[test]
fn setup_without_apply_is_a_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let swap = dir.path().join("swapfile");
    let before = agentmem_supervisor::setup::snapshot();
    let (_, out, err) = agentmem(&[
        "setup",
        "--state-file",
        state.to_str().unwrap(),
        "--swap-file",
        swap.to_str().unwrap(),
    ]);
    assert!(
        out.contains("KSM") && out.contains("zswap") && out.contains("cgroups"),
        "{out}{err}"
    );
    assert!(
        out.contains("dry run") || err.contains("not available"),
        "{out}{err}"
    );
    assert!(!state.exists() && !swap.exists(), "a dry run wrote nothing");
    assert_eq!(
        agentmem_supervisor::setup::snapshot(),
        before,
        "a dry run changed nothing"
    );
}
