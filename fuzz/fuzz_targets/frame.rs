//! The serial line's frame decoder over arbitrary bytes, and the upload
//! receiver driven by every frame it decodes, into a 64 KiB buffer. A
//! fuzzer-chosen byte now and then stands for "the line went quiet".
#![no_main]
use libfuzzer_sys::fuzz_target;
use upload::{Decoded, Decoder, Receiver, Reply, FRAME_OVERHEAD, MAX_PAYLOAD};

const BUF: usize = 64 << 10;

fuzz_target!(|data: &[u8]| {
    // First byte: which byte value, if any, resets the decoder (a timeout).
    let (quiet, line) = match data.split_first() {
        Some((&q, rest)) => (q, rest),
        None => return,
    };
    let mut d = Decoder::default();
    let mut r = Receiver::new();
    // The buffer is a guarded window: bytes around it must stay untouched.
    let mut mem = vec![0xa5u8; BUF + 64];
    let mut in_frame_bytes = 0usize;
    for &b in line {
        if quiet != 0 && b == quiet && d.in_frame() {
            d.reset();
            in_frame_bytes = 0;
            continue;
        }
        match d.feed(b) {
            Decoded::Frame(f) => {
                in_frame_bytes = 0;
                assert!(f.payload.len() <= MAX_PAYLOAD);
                match r.on_frame(&f, &mut mem[32..32 + BUF]) {
                    Reply::Complete { len } | Reply::AlreadyComplete { len } => assert!(len <= BUF),
                    Reply::Nak { resume, .. } => assert!(resume <= BUF as u64),
                    Reply::Ack | Reply::Aborted => {}
                }
                if let Some((got, total)) = r.progress() {
                    assert!(got <= total && total <= BUF as u64);
                }
            }
            Decoded::Pending => {
                in_frame_bytes += 1;
                assert!(in_frame_bytes < FRAME_OVERHEAD + MAX_PAYLOAD);
            }
            Decoded::Console(_) | Decoded::Dropped | Decoded::Stray(_) => in_frame_bytes = 0,
        }
    }
    assert!(mem[..32].iter().chain(&mem[32 + BUF..]).all(|&b| b == 0xa5), "wrote outside the buffer");
});
