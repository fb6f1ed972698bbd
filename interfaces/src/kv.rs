//! The key-value service's wire format.
//!
//! Request: label = [`KvOp`]; payload = [`KvHeader`], then the key, then the
//! value. Reply: label = [`KvStatus`]; payload = [`KvHeader`] then data.
use crate::message::{Message, MSG_BYTES};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const MAX_KEY: usize = 32;
pub const MAX_VALUE: usize = 128;

wire_enum! {
    pub enum KvOp via from_label {
        Get = 1,
        Put = 2,
        Delete = 3,
        /// Keys in order from a cursor; reply header `aux` is the next cursor.
        List = 4,
        /// Added in v2: which module version serves this call.
        Version = 5,
    }
}

wire_enum! {
    pub enum KvStatus via from_label {
        Ok = 0,
        NotFound = 1,
        /// The store is at capacity; delete something first.
        Full = 2,
        KeyTooLong = 3,
        ValueTooLong = 4,
        BadRequest = 5,
        UnknownOp = 6,
    }
}

#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct KvHeader {
    pub key_len: u16,
    pub value_len: u16,
    /// List cursor, count of list entries, or version, by operation.
    pub aux: u32,
}

const HDR: usize = core::mem::size_of::<KvHeader>();
/// The end-of-list cursor.
pub const LIST_END: u32 = u32::MAX;

/// A decoded, validated request.
#[derive(Debug, PartialEq, Eq)]
pub enum KvRequest<'a> {
    Get { key: &'a [u8] },
    Put { key: &'a [u8], value: &'a [u8] },
    Delete { key: &'a [u8] },
    List { cursor: u32 },
    Version,
}

fn header(msg: &Message) -> Option<KvHeader> {
    KvHeader::read_from_bytes(msg.payload(0, HDR)?).ok()
}

impl<'a> KvRequest<'a> {
    /// Validates everything the caller wrote.
    pub fn parse(msg: &'a Message) -> Result<KvRequest<'a>, KvStatus> {
        let op = KvOp::from_label(msg.label).ok_or(KvStatus::UnknownOp)?;
        let h = header(msg).ok_or(KvStatus::BadRequest)?;
        let (kl, vl) = (h.key_len as usize, h.value_len as usize);
        let key = || -> Result<&'a [u8], KvStatus> {
            if kl == 0 {
                return Err(KvStatus::BadRequest);
            }
            if kl > MAX_KEY {
                return Err(KvStatus::KeyTooLong);
            }
            msg.payload(HDR, kl).ok_or(KvStatus::BadRequest)
        };
        Ok(match op {
            KvOp::Get => KvRequest::Get { key: key()? },
            KvOp::Delete => KvRequest::Delete { key: key()? },
            KvOp::Put => {
                let key = key()?;
                if vl > MAX_VALUE {
                    return Err(KvStatus::ValueTooLong);
                }
                let value = msg.payload(HDR + kl, vl).ok_or(KvStatus::BadRequest)?;
                KvRequest::Put { key, value }
            }
            KvOp::List => KvRequest::List { cursor: h.aux },
            KvOp::Version => KvRequest::Version,
        })
    }

    /// Encodes this request into `msg`. Lengths are checked by the caller
    /// side too, so a bad request never leaves the client.
    pub fn encode(&self, msg: &mut Message) -> Result<(), KvStatus> {
        let (op, key, value, aux): (KvOp, &[u8], &[u8], u32) = match *self {
            KvRequest::Get { key } => (KvOp::Get, key, &[], 0),
            KvRequest::Put { key, value } => (KvOp::Put, key, value, 0),
            KvRequest::Delete { key } => (KvOp::Delete, key, &[], 0),
            KvRequest::List { cursor } => (KvOp::List, &[], &[], cursor),
            KvRequest::Version => (KvOp::Version, &[], &[], 0),
        };
        if key.len() > MAX_KEY {
            return Err(KvStatus::KeyTooLong);
        }
        if value.len() > MAX_VALUE {
            return Err(KvStatus::ValueTooLong);
        }
        msg.label = op as u64;
        let h = KvHeader { key_len: key.len() as u16, value_len: value.len() as u16, aux };
        let b = msg.bytes_mut();
        b[..HDR].copy_from_slice(h.as_bytes());
        b[HDR..HDR + key.len()].copy_from_slice(key);
        b[HDR + key.len()..HDR + key.len() + value.len()].copy_from_slice(value);
        msg.set_byte_len(HDR + key.len() + value.len());
        Ok(())
    }
}

/// Builds replies on the service side.
pub mod reply {
    use super::*;

    pub fn status(msg: &mut Message, s: KvStatus) {
        data(msg, s, 0, &[]);
    }

    /// A reply with `aux` and a data payload (truncated to fit).
    pub fn data(msg: &mut Message, s: KvStatus, aux: u32, data: &[u8]) {
        let n = data.len().min(MSG_BYTES - HDR);
        msg.label = s as u64;
        let h = KvHeader { key_len: 0, value_len: n as u16, aux };
        msg.bytes_mut()[..HDR].copy_from_slice(h.as_bytes());
        msg.bytes_mut()[HDR..HDR + n].copy_from_slice(&data[..n]);
        msg.set_byte_len(HDR + n);
    }

    /// Appends list entries as (len: u8, bytes) while they fit.
    pub struct ListWriter<'m> {
        msg: &'m mut Message,
        len: usize,
        count: u32,
    }

    impl<'m> ListWriter<'m> {
        pub fn new(msg: &'m mut Message) -> Self {
            ListWriter { msg, len: 0, count: 0 }
        }
        /// Adds `key`; false if it does not fit (the caller stops there).
        pub fn push(&mut self, key: &[u8]) -> bool {
            let at = HDR + self.len;
            if at + 1 + key.len() > MSG_BYTES || key.len() > u8::MAX as usize {
                return false;
            }
            let b = self.msg.bytes_mut();
            b[at] = key.len() as u8;
            b[at + 1..at + 1 + key.len()].copy_from_slice(key);
            self.len += 1 + key.len();
            self.count += 1;
            true
        }
        pub fn finish(self, next_cursor: u32) {
            self.msg.label = KvStatus::Ok as u64;
            // value_len holds the byte length, aux the next cursor; the
            // count is implied by walking the entries.
            let h = KvHeader { key_len: self.count as u16, value_len: self.len as u16, aux: next_cursor };
            self.msg.bytes_mut()[..HDR].copy_from_slice(h.as_bytes());
            self.msg.set_byte_len(HDR + self.len);
        }
    }
}

/// A decoded reply, validated on the client side.
#[derive(Debug, PartialEq, Eq)]
pub struct KvReply<'a> {
    pub status: KvStatus,
    pub aux: u32,
    pub data: &'a [u8],
    /// Entries in a list reply.
    pub entries: u16,
}

impl<'a> KvReply<'a> {
    pub fn parse(msg: &'a Message) -> Option<KvReply<'a>> {
        let status = KvStatus::from_label(msg.label)?;
        let h = header(msg)?;
        let data = msg.payload(HDR, h.value_len as usize)?;
        Some(KvReply { status, aux: h.aux, data, entries: h.key_len })
    }

    /// Iterates the keys of a list reply; stops at the first malformed one.
    pub fn list_keys(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut rest = self.data;
        core::iter::from_fn(move || {
            let (&len, tail) = rest.split_first()?;
            let key = tail.get(..len as usize)?;
            rest = &tail[len as usize..];
            Some(key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let mut m = Message::default();
        for r in [
            KvRequest::Put { key: b"k", value: b"hello" },
            KvRequest::Get { key: b"k" },
            KvRequest::Delete { key: &[7; MAX_KEY] },
            KvRequest::List { cursor: 3 },
            KvRequest::Version,
        ] {
            r.encode(&mut m).unwrap();
            assert_eq!(KvRequest::parse(&m).unwrap(), r);
        }
    }

    #[test]
    fn bad_requests_are_named() {
        let mut m = Message::default();
        assert_eq!(KvRequest::Get { key: &[0; MAX_KEY + 1] }.encode(&mut m), Err(KvStatus::KeyTooLong));
        KvRequest::Put { key: b"k", value: b"v" }.encode(&mut m).unwrap();
        m.count = 1; // value claimed but not sent
        assert_eq!(KvRequest::parse(&m), Err(KvStatus::BadRequest));
        m.label = 99;
        assert_eq!(KvRequest::parse(&m), Err(KvStatus::UnknownOp));
        let mut m = Message::default();
        KvRequest::Get { key: b"x" }.encode(&mut m).unwrap();
        m.bytes_mut()[0] = 0; // empty key
        assert_eq!(KvRequest::parse(&m), Err(KvStatus::BadRequest));
    }

    #[test]
    fn list_reply_round_trips() {
        let mut m = Message::default();
        let mut w = reply::ListWriter::new(&mut m);
        assert!(w.push(b"a") && w.push(b"bc"));
        w.finish(9);
        let r = KvReply::parse(&m).unwrap();
        assert_eq!((r.status, r.aux, r.entries), (KvStatus::Ok, 9, 2));
        assert_eq!(r.list_keys().collect::<heapless::Vec<_, 4>>(), [&b"a"[..], &b"bc"[..]]);
    }
}
