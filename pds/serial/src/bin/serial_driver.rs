//! The serial driver on the host runtime: the terminal is the device.
//! A reader thread plays the receive interrupt; output is written when the
//! console notifies. On a terminal, input is raw (the console does the line
//! editing); from a pipe or file, input is passed through and its end is
//! queued as END_OF_INPUT so the system can shut down cleanly.
use host_runtime::HostPd;
use pd_api::{ChannelId, Handler, Pd};
use serial::{to_terminal, Queues, END_OF_INPUT};
use std::io::{Read, Write};

struct Driver {
    tx: interfaces::queue::Consumer,
    client: std::sync::Arc<serial::Peer>,
    tty_out: bool,
}

impl Handler<HostPd> for Driver {
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        if !self.client.is(ch) {
            return;
        }
        let mut buf = [0u8; 1024];
        let mut out = [0u8; 2048];
        let mut stdout = std::io::stdout().lock();
        loop {
            match self.tx.pop(&mut buf) {
                Ok(0) => break,
                Ok(n) if self.tty_out => {
                    let m = to_terminal(&buf[..n], &mut out);
                    let _ = stdout.write_all(&out[..m]);
                }
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]);
                }
                Err(_) => {
                    pd.log(format_args!("console wrote an impossible tx index; dropping output"));
                    break;
                }
            }
        }
        let _ = stdout.flush();
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
        // SAFETY: isatty only inspects the descriptors.
        let (tty_in, tty_out) = unsafe { (libc::isatty(0) == 1, libc::isatty(1) == 1) };
        if tty_in {
            set_raw(0);
        }
        let client = std::sync::Arc::new(client);
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
        Driver { tx, client, tty_out }
    })
}
