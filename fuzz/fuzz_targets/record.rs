//! Any bytes given to the record decoder: an error or a record whose
//! checksum holds, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = agentmem_cold::format::decode(data) {
        let again = agentmem_cold::format::encode(r.kind, &r.key, r.tag, r.value);
        assert_eq!(again, data);
    }
    let _ = agentmem_cold::format::check_segment_header("fuzz", data);
});
