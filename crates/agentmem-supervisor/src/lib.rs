//! Supervisor for unmodified agent processes.
//!
//! Most agents people run (coding-agent CLIs) cannot call a library. This
//! crate manages their memory from outside:
//!
//! - [`setup`]: checks the machine and applies (and exactly reverts) the agent
//!   memory profile: zswap, a swap file, `vm.swappiness`, KSM tuning.
//! - [`agent`]: launches agents with KSM merging (`PR_SET_MEMORY_MERGE`) in
//!   their own cgroup ([`cgroup`]), or adopts running ones, recording them in
//!   a state directory so a restarted supervisor finds them again.
//! - [`supervisor`]: per agent, detects idleness from CPU time and I/O,
//!   pages idle agents out with `process_madvise(MADV_PAGEOUT)` after a
//!   threshold that adapts to each agent, learns the pages an agent touches
//!   while idle (left resident) and right after a resume (prefetched first
//!   with `MADV_WILLNEED`), freezes paused agents, and stops proactive
//!   reclaim under memory pressure (PSI).
//! - [`daemon`]: the `agentmem supervise` daemon and its control socket.
//!
//! Concurrency: one [`supervisor::Supervisor`] behind a mutex, ticked once a
//! second by one thread and driven by control requests on others. All system
//! calls live in [`sys`]; all /proc parsing in [`procfs`].

pub mod agent;
pub mod cgroup;
pub mod daemon;
pub mod error;
pub mod hooks;
pub mod idle;
pub mod pageset;
pub mod procfs;
pub mod setup;
pub mod supervisor;
pub mod sys;

pub use error::{Error, Result};
