//! `umctl`: the update manager's console, for people and scripts.
//!
//! It connects to the console of a running system, types one command, and
//! prints its answer. The console is a Unix socket (`--connect unix:PATH`:
//! the host runtime's `--console unix:PATH`, or QEMU's serial socket from
//! `cargo xtask qemu --console unix:PATH`) or a serial line (`--serial
//! DEVICE`: a board's UART such as /dev/ttyUSB0, QEMU's `-serial pty`, or
//! the host runtime's `--console pty`).
//!
//! Exit codes: 0 the command succeeded; 1 the manager refused it or it
//! failed (its answer says why); 2 bad usage; 3 no console to talk to.
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use upload::send::{send_bundle, Line};

const PROMPT: &str = "upd> ";

#[derive(Parser)]
#[command(
    version,
    about = "Operator CLI for the update manager's console",
    after_help = "The console is a Unix socket (--connect, the default) or a serial line (--serial):\n  \
        umctl --connect unix:/tmp/upd.sock status           the host runtime's --console unix:PATH\n  \
        umctl --serial /dev/ttyUSB0 --baud 115200 status    a board's UART\n  \
        umctl --serial /dev/pts/3 status                    QEMU's -serial pty, the host runtime's --console pty\n\
        Exit codes: 0 done; 1 refused or failed (the answer says why); 2 bad usage; 3 no console."
)]
struct Cli {
    /// The console's Unix socket: unix:PATH.
    #[arg(long, env = "UMCTL_CONNECT", default_value = "unix:/tmp/upd-console.sock", value_name = "unix:PATH")]
    connect: String,
    /// The console's serial line instead: a tty device (a UART such as
    /// /dev/ttyUSB0, or a pseudo-terminal), used raw, 8N1, no flow control.
    /// Overrides UMCTL_CONNECT.
    #[arg(long, env = "UMCTL_SERIAL", value_name = "DEVICE")]
    serial: Option<std::path::PathBuf>,
    /// The serial line's speed in bits per second (a pseudo-terminal ignores it).
    #[arg(
        long,
        env = "UMCTL_BAUD",
        default_value_t = 115_200,
        value_name = "RATE",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    baud: u32,
    /// How long to wait for an answer, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One row per protection domain: service, version, slot, state, calls, faults.
    Status,
    /// The module images the manager holds.
    Images,
    /// The update history with per-phase times (the last 20 entries by default).
    Log {
        /// How many of the last entries to show, or `all`.
        entries: Option<String>,
    },
    /// The manager's version, ABI, trusted keys.
    Version,
    /// Upload a signed bundle (from `cargo xtask sign`) into the manager's store.
    Upload {
        /// The bundle file.
        bundle: std::path::PathBuf,
    },
    /// Replace every instance of SERVICE with IMAGE, state and all.
    Update {
        service: String,
        image: String,
        /// Quiescence timeout in milliseconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Return every instance of SERVICE to its previous version (on probation: the old version replays the new one's calls).
    Rollback { service: String },
    /// Show the probation of the next updates, or set it: MS long (0: none), ending after CALLS journaled calls (0: no limit).
    Probation {
        ms: Option<u64>,
        #[arg(requires = "ms")]
        calls: Option<u64>,
    },
    /// Show whether the next updates pre-copy a module's state (exported while it serves; only the changes at the stop), or turn it on or off.
    Precopy {
        #[arg(value_parser = ["on", "off"])]
        setting: Option<String>,
    },
    /// End the probation of SERVICE's update now: the version becomes final.
    Accept { service: String },
    /// Drop an uploaded IMAGE that is not live or kept for a rollback, freeing its upload slot.
    Forget { image: String },
    /// The version floors, or raise SERVICE's floor to VERSION (a floor never falls).
    Floor {
        service: Option<String>,
        #[arg(requires = "service")]
        version: Option<u32>,
    },
}

/// What the console is reached through.
enum Link {
    Socket(UnixStream),
    Serial(serialport::TTYPort),
}

impl Link {
    /// Sets how long a read (or a write, on a serial line) may wait.
    fn set_timeout(&mut self, t: Duration) -> std::io::Result<()> {
        match self {
            Link::Socket(s) => s.set_read_timeout(Some(t)),
            Link::Serial(p) => serialport::SerialPort::set_timeout(p, t).map_err(std::io::Error::from),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Socket(s) => s.read(buf),
            Link::Serial(p) => p.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Socket(s) => s.write(buf),
            Link::Serial(p) => p.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Socket(s) => s.flush(),
            Link::Serial(p) => p.flush(),
        }
    }
}

/// Opens a serial line raw (no echo, no line editing, no CR/LF mapping:
/// the console echoes and edits itself, and upload frames are binary).
fn open_serial(dev: &std::path::Path, baud: u32) -> Result<serialport::TTYPort, String> {
    let name = dev.display();
    let busy = || format!("{name}: busy: another program is using the line");
    // Not exclusive (TIOCEXCL): it outlives umctl on a line someone else
    // holds open too (the host runtime's pty), locking later opens out. An
    // exclusive flock (below) keeps a second umctl off instead, and ends
    // with the process however it ends.
    let port = serialport::new(dev.to_string_lossy(), baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_secs(10))
        .exclusive(false)
        .open_native()
        .map_err(|e| {
            let d = &e.description;
            match e.kind {
                _ if d.contains("lock") || d.contains("busy") => busy(),
                serialport::ErrorKind::Io(std::io::ErrorKind::NotFound) => format!("{name}: no such device"),
                serialport::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
                    format!("{name}: permission denied (is the user in the device's group, e.g. dialout?)")
                }
                _ if d.contains("typewriter") || d.contains("Inappropriate ioctl") => {
                    format!("{name}: not a serial device (not a tty)")
                }
                serialport::ErrorKind::InvalidInput => format!("{name}: cannot use it at {baud} baud: {d}"),
                _ => format!("{name}: cannot open the serial line: {d}"),
            }
        })?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(port.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(busy());
    }
    // Output the console sent while nobody listened is stale.
    let _ = serialport::SerialPort::clear(&port, serialport::ClearBuffer::Input);
    Ok(port)
}

struct Console {
    stream: Link,
    /// Bytes read but not yet consumed.
    pending: Vec<u8>,
    frames: upload::Decoder,
}

impl Console {
    fn connect(cli: &Cli) -> Result<Console, String> {
        let stream = match &cli.serial {
            Some(dev) => Link::Serial(open_serial(dev, cli.baud)?),
            None => {
                let spec = &cli.connect;
                let path = spec.strip_prefix("unix:").ok_or_else(|| format!("--connect {spec}: expected unix:PATH"))?;
                let s =
                    UnixStream::connect(path).map_err(|e| format!("cannot connect to the console at {path}: {e}"))?;
                Link::Socket(s)
            }
        };
        Ok(Console { stream, pending: Vec::new(), frames: upload::Decoder::default() })
    }

    fn read_some(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.stream.set_timeout(left).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => Err("the console closed the connection".into()),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(format!("reading the console: {e}")),
        }
    }

    /// Reads until `pattern` arrives; returns everything before it.
    fn until(&mut self, pattern: &str, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.pending, pattern.as_bytes()) {
                let text = String::from_utf8_lossy(&self.pending[..i]).into_owned();
                self.pending.drain(..i + pattern.len());
                return Ok(text);
            }
            if !self.read_some(deadline)? {
                return Err(format!("no answer from the console (waited for '{}')", pattern.trim()));
            }
        }
    }

    /// Gets a fresh prompt, so the next answer is the command's own.
    fn sync(&mut self, deadline: Instant) -> Result<(), String> {
        self.stream.write_all(b"\n").map_err(|e| e.to_string())?;
        self.until(PROMPT, deadline)?;
        // Drain whatever else is buffered (an earlier prompt, a report).
        while self.read_some(Instant::now() + Duration::from_millis(50))? {}
        self.pending.clear();
        Ok(())
    }

    fn command(&mut self, line: &str, deadline: Instant) -> Result<String, String> {
        self.stream.write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string())?;
        self.until(line, deadline)?; // the echo (its line end is \n, or \r\n from a UART)
        let answer = self.until(PROMPT, deadline)?;
        Ok(answer.replace('\r', "").trim_start_matches('\n').to_owned())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Line for Console {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn recv_frame(&mut self, timeout: Duration) -> std::io::Result<Option<(upload::Kind, u16, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            while !self.pending.is_empty() {
                let b = self.pending.remove(0);
                if let upload::Decoded::Frame(f) = self.frames.feed(b) {
                    return Ok(Some((f.kind, f.seq, f.payload.to_vec())));
                }
            }
            match self.read_some(deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
    }
}

/// Whether the manager's answer reports a refusal or failure.
fn failed(answer: &str) -> bool {
    answer.lines().any(|l| l.starts_with("error:") || l.contains("FAILED") || l.starts_with("refused"))
}

fn run(cli: Cli) -> Result<ExitCode, (u8, String)> {
    let mut con = Console::connect(&cli).map_err(|e| (3, e))?;
    let deadline = Instant::now() + Duration::from_secs(cli.wait);
    con.sync(Instant::now() + Duration::from_secs(10)).map_err(|e| (3, e))?;
    let line = match &cli.command {
        Command::Status => "status".to_owned(),
        Command::Images => "images".to_owned(),
        Command::Log { entries: None } => "log".to_owned(),
        Command::Log { entries: Some(n) } => format!("log {n}"),
        Command::Version => "version".to_owned(),
        Command::Update { service, image, timeout: None } => format!("update {service} {image}"),
        Command::Update { service, image, timeout: Some(ms) } => format!("update {service} {image} --timeout {ms}"),
        Command::Rollback { service } => format!("rollback {service}"),
        Command::Probation { ms: None, .. } => "probation".to_owned(),
        Command::Probation { ms: Some(ms), calls: None } => format!("probation {ms}"),
        Command::Probation { ms: Some(ms), calls: Some(n) } => format!("probation {ms} {n}"),
        Command::Precopy { setting: None } => "precopy".to_owned(),
        Command::Precopy { setting: Some(on) } => format!("precopy {on}"),
        Command::Accept { service } => format!("accept {service}"),
        Command::Forget { image } => format!("forget {image}"),
        Command::Floor { service: Some(s), version: Some(v) } => format!("floor {s} {v}"),
        Command::Floor { service: Some(_), version: None } => {
            return Err((2, "floor: give a service and a version, or neither".into()))
        }
        Command::Floor { service: None, .. } => "floor".to_owned(),
        Command::Upload { bundle } => {
            let bytes = std::fs::read(bundle).map_err(|e| (2, format!("{}: {e}", bundle.display())))?;
            let bar = ProgressBar::new(bytes.len() as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_message("uploading");
            let outcome =
                send_bundle(&mut con, &bytes, |sent, _| bar.set_position(sent)).map_err(|e| (1, e.to_string()))?;
            bar.finish_and_clear();
            println!("{}", outcome.text);
            return Ok(if outcome.admitted { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
    };
    let answer = con.command(&line, deadline).map_err(|e| (3, e))?;
    print!("{answer}");
    Ok(if failed(&answer) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let m = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    // Both on the command line is a mistake; a UMCTL_CONNECT in the
    // environment is not, and --serial overrides it.
    let given = |arg| m.value_source(arg) == Some(clap::parser::ValueSource::CommandLine);
    if cli.serial.is_some() && given("connect") {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, "--serial and --connect name two consoles: give one")
            .exit();
    }
    // Likewise a UMCTL_BAUD is harmless on a socket; a --baud is a mistake.
    if cli.serial.is_none() && given("baud") {
        Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, "--baud needs --serial DEVICE").exit();
    }
    match run(cli) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("umctl: {msg}");
            ExitCode::from(code)
        }
    }
}
