//! `umctl`: the update manager's console, for people and scripts.
//!
//! It connects to the console of a running system (the host runtime's
//! `--console unix:PATH`, or QEMU's serial socket from `cargo xtask qemu
//! --console unix:PATH`), types one command, and prints its answer.
//!
//! Exit codes: 0 the command succeeded; 1 the manager refused it or it
//! failed (its answer says why); 2 bad usage; 3 no console to talk to.
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use upload::send::{send_bundle, Line};

const PROMPT: &str = "upd> ";

#[derive(Parser)]
#[command(version, about = "Operator CLI for the update manager's console")]
struct Cli {
    /// The console to connect to: unix:PATH.
    #[arg(long, env = "UMCTL_CONNECT", default_value = "unix:/tmp/upd-console.sock")]
    connect: String,
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

struct Console {
    stream: UnixStream,
    /// Bytes read but not yet consumed.
    pending: Vec<u8>,
    frames: upload::Decoder,
}

impl Console {
    fn connect(spec: &str) -> Result<Console, String> {
        let path = spec.strip_prefix("unix:").ok_or_else(|| format!("--connect {spec}: expected unix:PATH"))?;
        let stream = UnixStream::connect(path).map_err(|e| format!("cannot connect to the console at {path}: {e}"))?;
        Ok(Console { stream, pending: Vec::new(), frames: upload::Decoder::default() })
    }

    fn read_some(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
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
    let mut con = Console::connect(&cli.connect).map_err(|e| (3, e))?;
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err((code, msg)) => {
            eprintln!("umctl: {msg}");
            ExitCode::from(code)
        }
    }
}
