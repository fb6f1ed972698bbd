//! `host-runtime SYSTEM.xml [--search-path DIR]... [--console CONSOLE] [--disk PATH]`:
//! boots a system description on Linux. The console is the terminal, or
//! with `--console unix:PATH` a Unix socket that a tool (`umctl`) connects
//! to, or with `--console pty[:LINK]` a pseudo-terminal (a serial line for
//! `umctl --serial`); the UART driver reads `HOST_CONSOLE` to know which.
use clap::Parser;
use std::path::PathBuf;

/// Boots a Microkit system description on Linux, one process per PD.
#[derive(Parser)]
#[command(name = "host-runtime")]
struct Cli {
    /// The system description.
    system: PathBuf,
    /// Where program images and prefill files are found.
    #[arg(long = "search-path", value_name = "DIR")]
    search_path: Vec<PathBuf>,
    /// The console: unix:PATH (a socket for umctl), pty (a pseudo-terminal;
    /// the UART driver logs its path) or pty:LINK (and symlinks it at
    /// LINK). Default: this terminal.
    #[arg(long, value_name = "unix:PATH|pty[:LINK]", value_parser = console)]
    console: Option<String>,
    /// The disk image the block driver serves (a FAT32 image for the
    /// file service); the driver reads `HOST_DISK`.
    #[arg(long, value_name = "PATH")]
    disk: Option<PathBuf>,
}

fn console(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some(("unix" | "pty", rest)) if !rest.is_empty() => Ok(s.to_owned()),
        None if s == "pty" => Ok(s.to_owned()),
        _ => Err("expected unix:PATH, pty or pty:LINK".into()),
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(c) = &cli.console {
        // SAFETY: single-threaded here; the PDs inherit it.
        unsafe { std::env::set_var("HOST_CONSOLE", c) };
    }
    if let Some(d) = &cli.disk {
        // SAFETY: single-threaded here; the PDs inherit it.
        unsafe { std::env::set_var("HOST_DISK", d) };
    }
    let saved = TerminalGuard::save();
    let code = match host_runtime::launcher::boot(&cli.system, &cli.search_path) {
        Ok(board) => board.run(),
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    };
    drop(saved);
    std::process::exit(code);
}

/// The UART driver puts the terminal in raw mode; whatever happens to it,
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
