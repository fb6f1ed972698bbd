//! The console: the line editor over raw serial bytes, then the command
//! parser over every line it hands back, and over the input as text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use update_manager::command::{self, Command};
use update_manager::console::{Event, LineEditor, MAX_LINE};

fn check_parse(line: &str) {
    if let Ok(Some(Command::Update { service, image, timeout_ms })) = command::parse(line) {
        assert!(!service.is_empty() && service.len() <= 31 && !image.is_empty() && image.len() <= 31);
        assert!((1..=600_000).contains(&timeout_ms));
    }
}

fuzz_target!(|data: &[u8]| {
    check_parse(&String::from_utf8_lossy(data));
    let mut ed = LineEditor::default();
    for &b in data {
        if let Some(Event::Line(line)) = ed.feed(b, &mut |s| assert!(!s.is_empty())) {
            // Tabs become spaces, so a line is printable ASCII only.
            assert!(line.len() <= MAX_LINE, "line of {} bytes", line.len());
            assert!(line.bytes().all(|c| (0x20..=0x7e).contains(&c)));
            check_parse(&line);
        }
    }
});
