//! `host-runtime SYSTEM.xml [--search-path DIR]... [--console unix:PATH]`:
//! boots a system description on Linux. The console is the terminal, or
//! with `--console unix:PATH` a Unix socket that a tool (`umctl`) connects
//! to; the serial driver reads `HOST_CONSOLE` to know which.
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut system = None;
    let mut search = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--search-path" => match args.next() {
                Some(d) => search.push(PathBuf::from(d)),
                None => usage("--search-path needs a directory"),
            },
            "--console" => match args.next() {
                Some(c) if c.starts_with("unix:") && c.len() > 5 => {
                    // SAFETY: single-threaded here; the PDs inherit it.
                    unsafe { std::env::set_var("HOST_CONSOLE", c) };
                }
                _ => usage("--console needs unix:PATH"),
            },
            "-h" | "--help" => usage(""),
            _ if a.starts_with('-') => usage(&format!("unknown option '{a}'")),
            _ if system.is_none() => system = Some(PathBuf::from(a)),
            _ => usage("more than one system description given"),
        }
    }
    let system = system.unwrap_or_else(|| usage("no system description given"));
    let saved = TerminalGuard::save();
    let code = match host_runtime::launcher::boot(&system, &search) {
        Ok(board) => board.run(),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    drop(saved);
    std::process::exit(code);
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("error: {problem}");
    }
    eprintln!("usage: host-runtime SYSTEM.xml [--search-path DIR]... [--console unix:PATH]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 });
}

/// The serial driver puts the terminal in raw mode; whatever happens to it,
/// the terminal is restored when the runtime exits.
struct TerminalGuard(Option<libc::termios>);

impl TerminalGuard {
    fn save() -> TerminalGuard {
        // SAFETY: tcgetattr fills the termios we own.
        unsafe {
            let mut t = std::mem::zeroed();
            TerminalGuard((libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0).then_some(t))
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings saved above.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}
