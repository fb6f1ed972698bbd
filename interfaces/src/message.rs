//! The protected-procedure-call message: a label and up to 64 words, as in
//! seL4's IPC buffer as Microkit exposes it.
pub const MSG_WORDS: usize = 64;
/// Bytes that fit in a message's words.
pub const MSG_BYTES: usize = MSG_WORDS * 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C)]
pub struct Message {
    pub label: u64,
    /// Number of words in use; a receiver clamps it to `MSG_WORDS`.
    pub count: u32,
    pub _reserved: u32,
    pub words: [u64; MSG_WORDS],
}

impl Default for Message {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl Message {
    pub const fn new(label: u64, count: u32) -> Self {
        Message { label, count, _reserved: 0, words: [0; MSG_WORDS] }
    }

    /// A message carrying `words` after the label.
    pub fn with_words(label: u64, words: &[u64]) -> Self {
        let mut m = Message::new(label, words.len().min(MSG_WORDS) as u32);
        let n = m.count as usize;
        m.words[..n].copy_from_slice(&words[..n]);
        m
    }

    /// The words a sender claimed to send, clamped to the buffer.
    pub fn used_words(&self) -> &[u64] {
        &self.words[..(self.count as usize).min(MSG_WORDS)]
    }

    pub fn word(&self, i: usize) -> u64 {
        self.used_words().get(i).copied().unwrap_or(0)
    }

    /// The message words viewed as bytes (little endian, as on both targets).
    pub fn bytes(&self) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(&self.words[..])
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        zerocopy::IntoBytes::as_mut_bytes(&mut self.words[..])
    }

    /// Sets `count` to cover `nbytes` bytes of payload.
    pub fn set_byte_len(&mut self, nbytes: usize) {
        self.count = nbytes.div_ceil(8).min(MSG_WORDS) as u32;
    }

    /// The bytes `[off, off+len)` of the payload, if the sender's `count`
    /// covers them.
    pub fn payload(&self, off: usize, len: usize) -> Option<&[u8]> {
        let end = off.checked_add(len)?;
        (end <= self.used_words().len() * 8).then(|| &self.bytes()[off..end])
    }

    /// Writes a UTF-8 text reply (truncated to fit) and its length in word 0.
    pub fn set_text(&mut self, label: u64, text: &str) {
        self.label = label;
        let b = text.as_bytes();
        let n = b.len().min(MSG_BYTES - 8);
        self.words[0] = n as u64;
        self.bytes_mut()[8..8 + n].copy_from_slice(&b[..n]);
        self.set_byte_len(8 + n);
    }

    /// Reads a text written by `set_text`; invalid text reads as `None`.
    pub fn text(&self) -> Option<&str> {
        let n = self.word(0) as usize;
        core::str::from_utf8(self.payload(8, n)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_bounded_by_count() {
        let mut m = Message::new(1, 1);
        assert!(m.payload(0, 8).is_some());
        assert!(m.payload(0, 9).is_none());
        assert!(m.payload(usize::MAX, 2).is_none());
        m.count = 1000; // a peer lying about its length
        assert_eq!(m.used_words().len(), MSG_WORDS);
    }

    #[test]
    fn text_round_trips() {
        let mut m = Message::default();
        m.set_text(7, "missing channel serial");
        assert_eq!(m.label, 7);
        assert_eq!(m.text(), Some("missing channel serial"));
        m.words[0] = 10_000;
        assert_eq!(m.text(), None);
    }
}
