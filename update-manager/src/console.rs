//! The console's line discipline: echo, backspace, and what counts as a
//! line. It works on bytes from an untrusted serial line: control bytes,
//! escape sequences and over-long lines are recognised, never stored.
use alloc::string::String;

pub const PROMPT: &str = "upd> ";
/// Longest command line accepted.
pub const MAX_LINE: usize = 160;

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete line, without the terminator.
    Line(String),
    /// The line was longer than [`MAX_LINE`].
    TooLong,
    /// The line held bytes that are not printable text.
    Garbage,
    /// Ctrl-C: the line was dropped.
    Cancelled,
    /// Ctrl-D on an empty line, or the end of piped input.
    EndOfInput,
}

#[derive(Default)]
pub struct LineEditor {
    line: String,
    too_long: bool,
    garbage: bool,
    last_was_cr: bool,
    /// Inside an ANSI escape sequence (arrow keys and the like).
    escape: u8,
}

impl LineEditor {
    /// Feeds one byte; `echo` receives what the terminal should show.
    pub fn feed(&mut self, b: u8, echo: &mut impl FnMut(&str)) -> Option<Event> {
        let after_cr = core::mem::take(&mut self.last_was_cr);
        if self.escape > 0 {
            // ESC, then '[' (or 'O'), then parameters up to a final byte.
            self.escape = match (self.escape, b) {
                (1, b'[' | b'O') => 2,
                (2, 0x40..=0x7e) => 0,
                (2, _) => 2,
                _ => 0,
            };
            return None;
        }
        match b {
            b'\r' | b'\n' => {
                if b == b'\n' && after_cr {
                    return None; // the \n of a \r\n pair
                }
                self.last_was_cr = b == b'\r';
                echo("\n");
                let line = core::mem::take(&mut self.line);
                let event = if core::mem::take(&mut self.garbage) {
                    Event::Garbage
                } else if core::mem::take(&mut self.too_long) {
                    Event::TooLong
                } else {
                    Event::Line(line)
                };
                self.too_long = false;
                Some(event)
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() {
                    echo("\x08 \x08");
                }
                None
            }
            0x03 => {
                echo("^C\n");
                self.reset();
                Some(Event::Cancelled)
            }
            0x04 if self.line.is_empty() && !self.too_long && !self.garbage => Some(Event::EndOfInput),
            0x1b => {
                self.escape = 1;
                None
            }
            0x20..=0x7e => {
                if self.line.len() < MAX_LINE {
                    self.line.push(b as char);
                    let s = [b];
                    echo(core::str::from_utf8(&s).unwrap_or(""));
                } else {
                    self.too_long = true;
                }
                None
            }
            b'\t' => {
                if self.line.len() < MAX_LINE {
                    self.line.push(' ');
                    echo(" ");
                } else {
                    self.too_long = true;
                }
                None
            }
            _ => {
                self.garbage = true;
                None
            }
        }
    }

    fn reset(&mut self) {
        *self = LineEditor::default();
    }
}

/// Console input that waits for an operation to end, with its echo.
pub struct Deferred {
    pub echo: String,
    pub what: Typed,
}

pub enum Typed {
    Line(String),
    /// A line that was refused as typed (too long, garbage): its error.
    Refused(String),
    EndOfInput,
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{string::String as S, vec::Vec};

    fn run(bytes: &[u8]) -> (Vec<Event>, S) {
        let mut ed = LineEditor::default();
        let mut shown = S::new();
        let events = bytes.iter().filter_map(|&b| ed.feed(b, &mut |s| shown.push_str(s))).collect();
        (events, shown)
    }

    #[test]
    fn lines_backspace_and_crlf() {
        let (ev, shown) = run(b"stx\x7fatus\r\nhelp\n");
        assert_eq!(ev, [Event::Line("status".into()), Event::Line("help".into())]);
        assert_eq!(shown, "stx\x08 \x08atus\nhelp\n");
    }

    #[test]
    fn hostile_bytes_are_named_not_kept() {
        let (ev, _) = run(b"\x00\xff\x01status\n");
        assert_eq!(ev, [Event::Garbage]);
        let long = [b'a'; MAX_LINE + 10];
        let (ev, _) = run(&[&long[..], b"\nstatus\n"].concat());
        assert_eq!(ev, [Event::TooLong, Event::Line("status".into())]);
        // Tabs count towards the limit too (found by fuzz/ `command`).
        let tabs = [b'\t'; MAX_LINE + 1];
        let (ev, _) = run(&[&tabs[..], b"\n"].concat());
        assert_eq!(ev, [Event::TooLong]);
        let (ev, _) = run(b"\x1b[Ahelp\x1b[1;5C\n\x03\x04");
        assert_eq!(ev, [Event::Line("help".into()), Event::Cancelled, Event::EndOfInput]);
    }
}
