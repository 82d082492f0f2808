//! The daemon's and the client's frame decoders on arbitrary bytes: they
//! must return an error, never panic, hang or allocate without bound.
#![no_main]

use agentmem_proto::{
    decode_client_stream, decode_handshake_reply, decode_hello, decode_request,
    decode_response, split_frame, MIN_MAX_FRAME,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a connection's byte stream (hello, then requests).
    let _ = decode_client_stream(data, MIN_MAX_FRAME * 16);
    // As single payloads of each kind.
    let _ = decode_hello(data);
    let _ = decode_request(data);
    let _ = decode_response(data);
    let _ = decode_handshake_reply(data);
    // As a stream of responses, the client's side.
    let mut rest = data;
    while let Ok(Some((payload, used))) = split_frame(rest, MIN_MAX_FRAME) {
        let _ = decode_response(payload);
        rest = &rest[used..];
    }
});
