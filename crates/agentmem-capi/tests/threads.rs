//! The C API from many threads at once, with the context closed under them:
//! every call returns a result code, none crashes or hangs.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use agentmem::*;

#[test]
fn concurrent_calls_and_a_close_under_them() {
    let mut ctx = agentmem_ctx::default();
    // SAFETY: `ctx` is a live local; NULL options mean the defaults.
    let r = unsafe { agentmem_open_embedded(std::ptr::null(), &mut ctx) };
    assert_eq!(r, agentmem_result::AGENTMEM_OK);
    let closing = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let closing = closing.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut ok = 0u32;
                let mut refused = 0u32;
                // Until this thread has seen the close (bounded all the same).
                for i in 0..1_000_000u32 {
                    if refused > 0 {
                        break;
                    }
                    let name = format!("t{t}-{i}\0");
                    let mut a = agentmem_agent::default();
                    let mut h = agentmem_smu::default();
                    let data = format!("shared prompt {}", i % 10);
                    let mut buf = [0u8; 64];
                    let mut len = 0usize;
                    // SAFETY: all pointers are to live locals of the right
                    // type and size; `name` is NUL-terminated.
                    let results = unsafe {
                        [
                            agent_register(ctx, name.as_ptr().cast(), std::ptr::null(), &mut a),
                            agent_alloc_smu(a, 0, data.as_ptr().cast(), data.len(), &mut h),
                            agent_read(h, buf.as_mut_ptr().cast(), buf.len(), &mut len),
                            agent_free(h),
                            agent_unregister(a),
                        ]
                    };
                    for r in results {
                        match r {
                            agentmem_result::AGENTMEM_OK => ok += 1,
                            agentmem_result::AGENTMEM_CLOSED
                            | agentmem_result::AGENTMEM_INVALID_HANDLE => {
                                assert!(
                                    closing.load(Ordering::SeqCst),
                                    "refused before the close: {r:?}"
                                );
                                refused += 1;
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    if results[2] == agentmem_result::AGENTMEM_OK {
                        assert_eq!(&buf[..len], data.as_bytes());
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (ok, refused)
            })
        })
        .collect();
    // Close once every worker is under way.
    while done.load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    closing.store(true, Ordering::SeqCst);
    assert_eq!(agentmem_close(ctx), agentmem_result::AGENTMEM_OK);
    let (mut ok, mut refused) = (0, 0);
    for w in workers {
        let (o, r) = w.join().expect("no worker panicked");
        ok += o;
        refused += r;
    }
    assert!(ok > 0, "some calls ran before the close");
    assert!(refused > 0, "some calls came after the close");
    let mut st = agent_mem_stats::default();
    // SAFETY: `st` is a live local.
    let r = unsafe { agent_stats(ctx, &mut st) };
    assert_eq!(r, agentmem_result::AGENTMEM_CLOSED);
}
