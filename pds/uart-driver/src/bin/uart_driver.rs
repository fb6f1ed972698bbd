//! The UART driver on the host runtime: the terminal is the device.
//! A reader thread plays the receive interrupt; output is written when the
//! console notifies. On a terminal, input is raw (the console does the line
//! editing); from a pipe or file, input is passed through and its end is
//! queued as END_OF_INPUT so the system can shut down cleanly.
//!
//! `HOST_CONSOLE` (set by `host-runtime --console`) moves the device:
//! `unix:PATH` a socket for one tool at a time; `pty` or `pty:LINK` a
//! pseudo-terminal, the host's stand-in for a UART (`umctl --serial`), whose
//! slave path is logged and, with LINK, symlinked there.
use host_runtime::HostPd;
use pd_api::{ChannelId, Handler, Pd};
use std::io::{Read, Write};
use uart_driver::{Queues, TerminalOut, END_OF_INPUT};

/// Where the console's output goes.
enum Out {
    /// `crlf`: the terminal's `\n` needs a `\r` (frames pass untouched).
    Terminal { crlf: Option<TerminalOut> },
    /// The tool connected to the console socket, if any (output is
    /// discarded while none is, as on a UART with nothing attached).
    Socket(std::sync::Arc<std::sync::Mutex<Option<std::os::unix::net::UnixStream>>>),
    /// The pseudo-terminal's master side (non-blocking).
    Pty(pty::Master),
}

struct Driver {
    tx: interfaces::queue::Consumer,
    client: std::sync::Arc<uart_driver::Peer>,
    out: Out,
}

impl Handler<HostPd> for Driver {
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        if !self.client.is(ch) {
            return;
        }
        let mut buf = [0u8; 1024];
        let mut out = [0u8; 2048];
        let mut stdout = std::io::stdout().lock();
        let mut drained = false;
        loop {
            let n = match self.tx.pop(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    drained = true;
                    n
                }
                Err(_) => {
                    pd.log(format_args!("console wrote an impossible tx index; dropping output"));
                    break;
                }
            };
            match &mut self.out {
                Out::Terminal { crlf: Some(t) } => {
                    let m = t.translate(&buf[..n], &mut out);
                    let _ = stdout.write_all(&out[..m]);
                }
                Out::Terminal { crlf: None } => {
                    let _ = stdout.write_all(&buf[..n]);
                }
                Out::Pty(m) => m.write(&buf[..n]),
                Out::Socket(conn) => {
                    let mut conn = conn.lock().expect("console socket");
                    if conn.as_mut().is_some_and(|c| c.write_all(&buf[..n]).is_err()) {
                        *conn = None; // the tool went away
                    }
                }
            }
        }
        let _ = stdout.flush();
        if drained {
            // Room again in the tx queue: the client may be holding back
            // output that did not fit, with nothing else to wake it.
            self.client.notify(pd);
        }
    }
}

fn set_raw(fd: i32) {
    // SAFETY: termios calls on a descriptor we hold (stdin: the runtime
    // restores it).
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            // Keep output processing off too: the driver adds the \r.
            libc::tcsetattr(fd, libc::TCSANOW, &t);
        }
    }
}

fn main() {
    host_runtime::run(|pd| {
        let Queues { mut rx, tx, client } = match Queues::attach(pd, interfaces::control::MANAGER_PD) {
            Ok(q) => q,
            Err(e) => {
                pd.log(format_args!("{e}"));
                std::process::exit(2);
            }
        };
        let client = std::sync::Arc::new(client);
        let console = std::env::var("HOST_CONSOLE").unwrap_or_default();
        if let Some(path) = console.strip_prefix("unix:") {
            let out = serve_socket(pd, path, rx, client.clone());
            return Driver { tx, client, out };
        }
        if console == "pty" || console.starts_with("pty:") {
            let link = console.strip_prefix("pty:");
            let out = pty::serve(pd, link, rx, client.clone()).unwrap_or_else(|e| {
                pd.log(format_args!("console pseudo-terminal: {e}"));
                std::process::exit(2);
            });
            return Driver { tx, client, out: Out::Pty(out) };
        }
        // SAFETY: isatty only inspects the descriptors.
        let (tty_in, tty_out) = unsafe { (libc::isatty(0) == 1, libc::isatty(1) == 1) };
        if tty_in {
            set_raw(0);
        }
        let peer = client.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut push_all = |mut bytes: &[u8]| {
                while !bytes.is_empty() {
                    match rx.push(bytes) {
                        Ok(n) => bytes = &bytes[n..],
                        Err(_) => return,
                    }
                    peer.notify(pd);
                    if !bytes.is_empty() {
                        // The console is behind: give it time to drain.
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            };
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        if !tty_in {
                            push_all(&[END_OF_INPUT]);
                        }
                        return;
                    }
                    Ok(n) => push_all(&buf[..n]),
                }
            }
        });
        Driver { tx, client, out: Out::Terminal { crlf: tty_out.then(TerminalOut::default) } }
    })
}

/// The console on a Unix socket: one tool at a time; its input goes to the
/// rx queue, and a tool disconnecting is not the end of input.
fn serve_socket(
    pd: &'static HostPd,
    path: &str,
    mut rx: interfaces::queue::Producer,
    peer: std::sync::Arc<uart_driver::Peer>,
) -> Out {
    use std::os::unix::net::UnixListener;
    let _ = std::fs::remove_file(path);
    let listener = match UnixListener::bind(path) {
        Ok(l) => l,
        Err(e) => {
            pd.log(format_args!("console socket {path}: {e}"));
            std::process::exit(2);
        }
    };
    pd.log(format_args!("console on unix:{path}"));
    let current = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = current.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let Ok(writer) = conn.try_clone() else { continue };
            *slot.lock().expect("console socket") = Some(writer);
            let mut buf = [0u8; 256];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                let mut bytes = &buf[..n];
                while !bytes.is_empty() {
                    match rx.push(bytes) {
                        Ok(k) => bytes = &bytes[k..],
                        Err(_) => return,
                    }
                    peer.notify(pd);
                    if !bytes.is_empty() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
            *slot.lock().expect("console socket") = None;
        }
    });
    Out::Socket(current)
}

/// The console on a pseudo-terminal: like a UART, whoever opens the slave
/// side talks to the console, and output nobody reads is lost.
mod pty {
    use super::*;
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::OpenOptionsExt;

    pub struct Master {
        file: File,
        /// The driver's own open of the slave: with it the master never sees
        /// a hang-up (EIO) between tools, and the line's output queue can be
        /// flushed when nobody reads it.
        slave: File,
    }

    fn last_error(what: &str) -> String {
        format!("{what}: {}", std::io::Error::last_os_error())
    }

    /// How long output waits for a reader before it is dropped.
    const STALL: std::time::Duration = std::time::Duration::from_millis(200);

    impl Master {
        pub fn write(&self, mut bytes: &[u8]) {
            let mut flushed = false;
            while !bytes.is_empty() {
                match (&self.file).write(bytes) {
                    Ok(n) => bytes = &bytes[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if !wait(&self.file, libc::POLLOUT, STALL) {
                            if flushed {
                                return; // still no room: drop, as a UART would
                            }
                            // Nobody read the earlier output: discard it so
                            // the next tool to open the line starts afresh.
                            // SAFETY: tcflush on our own descriptor.
                            unsafe { libc::tcflush(self.slave.as_raw_fd(), libc::TCIFLUSH) };
                            flushed = true;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        }
    }

    /// Waits (at most `timeout`; forever if None) until `f` is ready for `events`.
    fn wait_opt(f: &File, events: libc::c_short, timeout: Option<std::time::Duration>) -> bool {
        let mut p = libc::pollfd { fd: f.as_raw_fd(), events, revents: 0 };
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
        // SAFETY: one pollfd we own.
        unsafe { libc::poll(&mut p, 1, ms) > 0 && p.revents & events != 0 }
    }

    fn wait(f: &File, events: libc::c_short, timeout: std::time::Duration) -> bool {
        wait_opt(f, events, Some(timeout))
    }

    /// Opens a pseudo-terminal pair in raw mode, logs the slave's path
    /// (and symlinks it at `link`), and feeds what is typed on it to `rx`.
    pub fn serve(
        pd: &'static HostPd,
        link: Option<&str>,
        mut rx: interfaces::queue::Producer,
        peer: std::sync::Arc<uart_driver::Peer>,
    ) -> Result<Master, String> {
        // SAFETY: plain libc calls; each descriptor is owned by a File at once.
        let (file, path) = unsafe {
            let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
            if fd < 0 {
                return Err(last_error("posix_openpt"));
            }
            let file = File::from_raw_fd(fd);
            if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
                return Err(last_error("unlockpt"));
            }
            let mut name = [0 as libc::c_char; 128];
            if libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) != 0 {
                return Err(last_error("ptsname"));
            }
            (file, std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned())
        };
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&path)
            .map_err(|e| format!("{path}: {e}"))?;
        // Raw: the console does its own echo and line editing, and upload
        // frames are binary. (A tool opening the line sets it raw too.)
        set_raw(slave.as_raw_fd());
        if let Some(link) = link {
            let _ = std::fs::remove_file(link);
            std::os::unix::fs::symlink(&path, link).map_err(|e| format!("symlink {link}: {e}"))?;
            pd.log(format_args!("console on pty {path} (linked at {link})"));
        } else {
            pd.log(format_args!("console on pty {path}"));
        }
        let reader = file.try_clone().map_err(|e| format!("{path}: {e}"))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                // The master is non-blocking (for the writer): wait for input.
                // A hang-up (no slave open: cannot happen while we hold one)
                // must not become a busy loop.
                if !wait_opt(&reader, libc::POLLIN, None) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                let n = match (&reader).read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                        continue
                    }
                    Err(e) => {
                        pd.log(format_args!("console pty: {e}"));
                        return;
                    }
                };
                let mut bytes = &buf[..n];
                while !bytes.is_empty() {
                    match rx.push(bytes) {
                        Ok(k) => bytes = &bytes[k..],
                        Err(_) => return,
                    }
                    peer.notify(pd);
                    if !bytes.is_empty() {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        });
        Ok(Master { file, slave })
    }
}
