//! An upload over a hostile line: garbage between frames, corrupted,
//! dropped, repeated and reordered frames, lost acknowledgements. The
//! sender retransmits whatever was not acknowledged; the receiver ends up
//! with exactly the bundle, and never admits part of one.
use bundle::sign::{make_bundle, SigningKey};
use bundle::{Target, HEADER_LEN};
use upload::{encode, Decoded, Decoder, Kind, Nak, Receiver, Reply, FRAME_OVERHEAD, MAX_PAYLOAD};

const CHUNK: usize = 900;

fn a_bundle(len: usize) -> Vec<u8> {
    let image: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let d = interfaces::abi::ModuleDescriptor::new("kv", 4, 2);
    make_bundle(&image, &d, Target::Host, &SigningKey::from_seed([3; 32]))
}

/// The frames of an upload: BEGIN, DATA at each offset, END.
fn frames(bundle: &[u8]) -> Vec<(Kind, Vec<u8>)> {
    let mut begin = (bundle.len() as u64).to_le_bytes().to_vec();
    begin.extend_from_slice(&bundle[..HEADER_LEN]);
    let mut v = vec![(Kind::Begin, begin)];
    for (k, chunk) in bundle.chunks(CHUNK).enumerate() {
        let mut p = ((k * CHUNK) as u32).to_le_bytes().to_vec();
        p.extend_from_slice(chunk);
        v.push((Kind::Data, p));
    }
    v.push((Kind::End, Vec::new()));
    v
}

/// A deterministic pseudo-random source for the line's faults.
struct Faults(u64);
impl Faults {
    fn chance(&mut self, percent: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 100 < percent
    }
}

/// Sends `bundle` over a line that misbehaves with the given fault rates;
/// returns what the receiver stored, and how many frames went out.
fn upload(bundle: &[u8], faults: &mut Faults, rate: u64) -> (Vec<u8>, usize) {
    let plan = frames(bundle);
    let mut dec = Decoder::default();
    let mut rx = Receiver::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut next, mut sent, mut admitted) = (0usize, 0usize, 0u32);
    while sent < 20_000 {
        // Now and then send the frame after the one due (a reordering).
        let i = if next + 1 < plan.len() && faults.chance(rate / 2) { next + 1 } else { next };
        let (kind, payload) = &plan[i];
        let mut line = [0u8; MAX_PAYLOAD + FRAME_OVERHEAD];
        let n = encode(*kind, i as u16, payload, &mut line).unwrap();
        let mut bytes = line[..n].to_vec();
        sent += 1;
        if faults.chance(rate) {
            bytes.splice(0..0, [0xff, 0x00, b'x', 0x01, 0x42]); // garbage, even a stray SOH
        }
        if faults.chance(rate) {
            let at = 1 + (faults.0 as usize % (bytes.len() - 1));
            bytes[at] ^= 0x5a; // corrupted in transit
        }
        if faults.chance(rate) {
            bytes.truncate(bytes.len() / 2); // dropped halfway
        }
        let mut reply = None;
        for &b in &bytes {
            if let Decoded::Frame(f) = dec.feed(b) {
                let r = rx.on_frame(&f, &mut buf);
                if matches!(r, Reply::Complete { .. }) {
                    admitted += 1; // the receiver admits it, heard or not
                }
                reply = Some(r);
            }
        }
        if reply.is_none() {
            dec.reset(); // the line went quiet: forget a partial frame
        }
        if faults.chance(rate) {
            reply = None; // the acknowledgement was lost
        }
        match reply {
            Some(Reply::Complete { len } | Reply::AlreadyComplete { len }) => {
                assert_eq!(admitted, 1, "admitted exactly once");
                return (buf[..len].to_vec(), sent);
            }
            Some(Reply::Ack) if i == next => next += 1,
            Some(Reply::Nak { reason: Nak::OutOfOrder | Nak::Incomplete, resume }) => {
                next = 1 + resume as usize / CHUNK; // the DATA frame at `resume`
            }
            Some(Reply::Nak { reason, .. }) if i == next && reason != Nak::OutOfOrder => {
                panic!("frame {i} refused: {reason:?}")
            }
            _ => {} // nothing heard (or the answer to another frame): send again
        }
    }
    panic!("upload did not finish");
}

#[test]
fn a_clean_line_carries_the_bundle_exactly() {
    let b = a_bundle(10_000);
    let (got, sent) = upload(&b, &mut Faults(1), 0);
    assert_eq!(got, b);
    assert_eq!(sent, frames(&b).len(), "no retransmission on a clean line");
}

#[test]
fn a_hostile_line_still_carries_the_bundle_exactly() {
    for seed in 1..=20u64 {
        let b = a_bundle(50_000 + seed as usize * 97);
        let (got, sent) = upload(&b, &mut Faults(seed * 7919), 20);
        assert_eq!(got, b, "seed {seed}");
        assert!(sent > frames(&b).len(), "seed {seed}: faults forced retransmissions");
    }
}

#[test]
fn sizes_are_checked_before_anything_is_stored() {
    let b = a_bundle(5_000);
    let plan = frames(&b);
    let mut rx = Receiver::new();
    let mut small = vec![0u8; 1000];
    fn f(kind: Kind, payload: &[u8]) -> upload::Frame<'_> {
        upload::Frame { kind, seq: 0, payload }
    }
    assert_eq!(rx.on_frame(&f(Kind::Begin, &plan[0].1), &mut small), Reply::Nak { reason: Nak::TooLarge, resume: 0 });
    assert!(small.iter().all(|&x| x == 0), "nothing stored");
    assert_eq!(rx.on_frame(&f(Kind::Data, &plan[1].1), &mut small), Reply::Nak { reason: Nak::NoUpload, resume: 0 });
    let mut lying = plan[0].1.clone();
    lying[..8].copy_from_slice(&(b.len() as u64 + 1).to_le_bytes());
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(rx.on_frame(&f(Kind::Begin, &lying), &mut buf), Reply::Nak { reason: Nak::BadBegin, resume: 0 });
    assert_eq!(rx.on_frame(&f(Kind::Begin, b"short"), &mut buf), Reply::Nak { reason: Nak::Malformed, resume: 0 });
    assert_eq!(rx.on_frame(&f(Kind::Begin, &plan[0].1), &mut buf), Reply::Ack);
    assert_eq!(rx.on_frame(&f(Kind::End, b""), &mut buf), Reply::Nak { reason: Nak::Incomplete, resume: 0 });
    assert_eq!(rx.on_frame(&f(Kind::Abort, b""), &mut buf), Reply::Aborted);
    assert_eq!(rx.on_frame(&f(Kind::End, b""), &mut buf), Reply::Nak { reason: Nak::NoUpload, resume: 0 });
}
