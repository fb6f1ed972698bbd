//! The serial driver on the host runtime: the terminal is the device.
//! A reader thread plays the receive interrupt; output is written when the
//! console notifies. On a terminal, input is raw (the console does the line
//! editing); from a pipe or file, input is passed through and its end is
//! queued as END_OF_INPUT so the system can shut down cleanly.
use host_runtime::HostPd;
use pd_api::{ChannelId, Handler, Pd};
use serial::{Queues, TerminalOut, END_OF_INPUT};
use std::io::{Read, Write};

/// Where the console's output goes.
enum Out {
    /// `crlf`: the terminal's `\n` needs a `\r` (frames pass untouched).
    Terminal { crlf: Option<TerminalOut> },
    /// The tool connected to the console socket, if any (output is
    /// discarded while none is, as on a UART with nothing attached).
    Socket(std::sync::Arc<std::sync::Mutex<Option<std::os::unix::net::UnixStream>>>),
}

struct Driver {
    tx: interfaces::queue::Consumer,
    client: std::sync::Arc<serial::Peer>,
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
    // SAFETY: termios calls on our own stdin; the runtime restores it.
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
        if let Some(path) = std::env::var("HOST_CONSOLE").ok().and_then(|c| c.strip_prefix("unix:").map(String::from)) {
            let out = serve_socket(pd, &path, rx, client.clone());
            return Driver { tx, client, out };
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
    peer: std::sync::Arc<serial::Peer>,
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
