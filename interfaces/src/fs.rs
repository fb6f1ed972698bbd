//! The file service's wire format.
//!
//! Request: label = [`FsOp`]; word 0 a handle, word 1 an argument (a
//! length, a position, a mode or a list cursor), word 2 the path's length,
//! and the path's bytes from byte 24. File data and directory listings
//! travel in the client's own shared buffer (`buf<channel>` in the slot),
//! never in the message. Reply: label = [`FsStatus`]; words 0 and 1 carry
//! the results.
use crate::message::Message;

/// Longest path, in bytes (`/DIR/SUB/NAME.EXT`; 8.3 names).
pub const MAX_PATH: usize = 64;
const PATH_AT: usize = 24;
/// The end-of-list cursor.
pub const LIST_END: u64 = u64::MAX;

wire_enum! {
    pub enum FsOp via from_label {
        /// path, arg = [`OpenMode`] -> word 0: handle.
        Open = 1,
        /// handle, arg = length: reads at the handle's position into the
        /// buffer -> word 0: bytes read (0 at the end of the file).
        Read = 2,
        /// handle, arg = length: writes the buffer's first bytes at the
        /// handle's position -> word 0: bytes written.
        Write = 3,
        /// handle, arg = position.
        Seek = 4,
        Close = 5,
        /// path (a directory), arg = cursor: entries from the cursor into
        /// the buffer -> word 0: entries, word 1: next cursor or LIST_END.
        List = 6,
        /// path -> word 0: size, word 1: 1 for a directory.
        Stat = 7,
        Mkdir = 8,
        /// Removes a file.
        Remove = 9,
        /// Removes an empty directory.
        Rmdir = 10,
        /// -> word 0: the module version, word 1: the FAT crate's version
        /// (major << 16 | minor << 8 | patch).
        Version = 11,
        /// Writes every dirty block of an open file out (its directory
        /// entry included).
        Sync = 12,
    }
}

wire_enum! {
    pub enum FsStatus via from_label {
        Ok = 0,
        NotFound = 1,
        Exists = 2,
        /// A file where a directory was named, or the other way round.
        WrongKind = 3,
        BadRequest = 4,
        BadHandle = 5,
        /// No handle, directory or file slot is free.
        TooManyOpen = 6,
        /// The file is open already (the FAT crates allow one open).
        Busy = 7,
        NoSpace = 8,
        /// The disk's structures are damaged.
        Corrupt = 9,
        /// The block device failed.
        Io = 10,
        /// This version (its FAT crate) cannot do that.
        Unsupported = 11,
        UnknownOp = 12,
        NotEmpty = 13,
        BadName = 14,
    }
}

wire_enum! {
    pub enum OpenMode via from_word {
        Read = 0,
        /// Create, or truncate an existing file.
        Create = 1,
        /// Create, or append to an existing file (read and write).
        Append = 2,
    }
}

/// A decoded, validated request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsRequest<'a> {
    pub op: FsOp,
    pub handle: u64,
    pub arg: u64,
    pub path: &'a str,
}

impl<'a> FsRequest<'a> {
    /// Validates everything the caller wrote (the path must be ASCII).
    pub fn parse(msg: &'a Message) -> Result<FsRequest<'a>, FsStatus> {
        let op = FsOp::from_label(msg.label).ok_or(FsStatus::UnknownOp)?;
        let len = msg.word(2) as usize;
        if len > MAX_PATH {
            return Err(FsStatus::BadName);
        }
        let bytes = msg.payload(PATH_AT, len).ok_or(FsStatus::BadRequest)?;
        let path = core::str::from_utf8(bytes).ok().filter(|p| p.is_ascii()).ok_or(FsStatus::BadName)?;
        Ok(FsRequest { op, handle: msg.word(0), arg: msg.word(1), path })
    }

    pub fn encode(&self, msg: &mut Message) -> Result<(), FsStatus> {
        if self.path.len() > MAX_PATH {
            return Err(FsStatus::BadName);
        }
        *msg = Message::with_words(self.op as u64, &[self.handle, self.arg, self.path.len() as u64]);
        msg.bytes_mut()[PATH_AT..PATH_AT + self.path.len()].copy_from_slice(self.path.as_bytes());
        msg.set_byte_len(PATH_AT + self.path.len());
        Ok(())
    }
}

pub fn reply(msg: &mut Message, s: FsStatus, w0: u64, w1: u64) {
    *msg = Message::with_words(s as u64, &[w0, w1]);
}

/// One entry of a listing in the buffer: `name_len: u8, name, kind: u8
/// (1 directory), size: u32 LE`.
pub const ENTRY_FIXED: usize = 6;

/// Appends an entry at `at` in `buf`; returns the new end, or None if it
/// does not fit.
pub fn put_entry(buf: &mut [u8], at: usize, name: &[u8], dir: bool, size: u32) -> Option<usize> {
    let end = at.checked_add(ENTRY_FIXED + name.len())?;
    let dst = buf.get_mut(at..end)?;
    dst[0] = u8::try_from(name.len()).ok()?;
    dst[1..1 + name.len()].copy_from_slice(name);
    dst[1 + name.len()] = dir as u8;
    dst[2 + name.len()..].copy_from_slice(&size.to_le_bytes());
    Some(end)
}

/// The entries of a listing, as the client reads them from its buffer;
/// stops at the first malformed one.
pub fn entries(buf: &[u8], count: usize) -> impl Iterator<Item = (&[u8], bool, u32)> {
    let mut rest = buf;
    core::iter::from_fn(move || {
        let (&n, tail) = rest.split_first()?;
        let name = tail.get(..n as usize)?;
        let kind = *tail.get(n as usize)?;
        let size = u32::from_le_bytes(tail.get(n as usize + 1..n as usize + 5)?.try_into().ok()?);
        rest = &tail[n as usize + 5..];
        Some((name, kind == 1, size))
    })
    .take(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let mut m = Message::default();
        let r = FsRequest { op: FsOp::Open, handle: 0, arg: OpenMode::Create as u64, path: "/D/F.TXT" };
        r.encode(&mut m).unwrap();
        assert_eq!(FsRequest::parse(&m), Ok(r));
        m.words[2] = 500;
        assert_eq!(FsRequest::parse(&m), Err(FsStatus::BadName));
        m.words[2] = 8;
        m.count = 3; // path claimed but not sent
        assert_eq!(FsRequest::parse(&m), Err(FsStatus::BadRequest));
        m.label = 99;
        assert_eq!(FsRequest::parse(&m), Err(FsStatus::UnknownOp));
    }

    #[test]
    fn entries_round_trip() {
        let mut b = [0u8; 64];
        let at = put_entry(&mut b, 0, b"A.TXT", false, 7).unwrap();
        let at2 = put_entry(&mut b, at, b"D", true, 0).unwrap();
        assert!(put_entry(&mut b, at2, &[b'x'; 60], false, 0).is_none());
        let got: heapless::Vec<_, 4> = entries(&b[..at2], 2).collect();
        assert_eq!(got.as_slice(), &[(&b"A.TXT"[..], false, 7), (&b"D"[..], true, 0)]);
    }
}
