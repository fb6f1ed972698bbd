//! Fixed-size, NUL-padded names used in headers and tables.
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A name of at most 31 bytes, NUL padded, as stored in headers.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Name(pub [u8; 32]);

impl Name {
    pub const EMPTY: Name = Name([0; 32]);
    pub const MAX_LEN: usize = 31;

    /// Builds a name at compile time; panics (a build error in const
    /// context) if `s` does not fit.
    pub const fn new(s: &str) -> Name {
        let b = s.as_bytes();
        assert!(b.len() <= Self::MAX_LEN, "name too long");
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < b.len() {
            out[i] = b[i];
            i += 1;
        }
        Name(out)
    }

    /// Builds a name at run time, or `None` if it does not fit.
    pub fn try_new(s: &str) -> Option<Name> {
        (s.len() <= Self::MAX_LEN && !s.as_bytes().contains(&0)).then(|| Name::new(s))
    }

    /// The name as text; `None` if a peer wrote something that is not a
    /// NUL-terminated UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        let len = self.0.iter().position(|&b| b == 0)?;
        core::str::from_utf8(&self.0[..len]).ok()
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.as_str() {
            Some(s) => write!(f, "{s:?}"),
            None => write!(f, "<invalid name>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_names() {
        assert_eq!(Name::new("kv").as_str(), Some("kv"));
        assert!(Name::try_new(&"x".repeat(32)).is_none());
        assert!(Name::try_new("a\0b").is_none());
        assert_eq!(Name([b'a'; 32]).as_str(), None, "no terminator");
        assert_eq!(Name([0xff; 32]).as_str(), None);
    }
}
