//! The system on seL4: builds the image of system.xml, boots it in QEMU,
//! and checks the operator's `status` table over the serial console:
//! every PD is there, the kv service is live in slot a, and the client's
//! verified count grows with no wrong reply.
//!
//! Skipped (with a message on stderr, which the test harness does not
//! capture) when MICROKIT_SDK or QEMU is missing.
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROMPT: &str = "upd> ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

fn skip(why: &str) {
    // Straight to the process's stderr: a skip must be seen, not captured.
    let _ = writeln!(std::io::stderr(), "\nSKIPPED qemu test: {why}\n");
}

struct Qemu {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Qemu {
    fn boot(loader: &std::path::Path) -> Qemu {
        let mut child = xtask::sel4::qemu(loader)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting qemu-system-aarch64");
        let out = Arc::new(Mutex::new(String::new()));
        for pipe in
            [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Qemu { child, out }
    }

    fn transcript(&self) -> String {
        self.out.lock().unwrap().replace('\r', "")
    }

    /// Waits until the transcript holds `count` prompts; panics with the
    /// transcript on timeout.
    fn wait_prompts(&mut self, count: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            if self.transcript().matches(PROMPT).count() >= count {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!("QEMU exited ({status}) before prompt {count}"));
            }
            if start.elapsed() > timeout {
                self.fail(&format!("no prompt #{count} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("{why}\n----- QEMU transcript -----\n{}\n----- end of transcript -----", self.transcript());
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of the last status table in `transcript`: PD name -> columns.
fn last_table(transcript: &str) -> Vec<Vec<String>> {
    let Some(start) = transcript.rfind("PD ") else { return Vec::new() };
    transcript[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with(PROMPT.trim_end()))
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|r| !r.is_empty())
        .collect()
}

fn verified(row: &[String]) -> Option<(u64, u64)> {
    let field = |k: &str| row.iter().find_map(|c| c.strip_prefix(k)).and_then(|v| v.parse().ok());
    Some((field("verified=")?, field("wrong=")?))
}

#[test]
fn boots_on_sel4_and_serves_the_client() {
    if let Err(e) = xtask::sel4::sdk() {
        return skip(&e);
    }
    if Command::new("qemu-system-aarch64").arg("--version").output().is_err() {
        return skip("qemu-system-aarch64 is not installed");
    }
    let system = xtask::workspace_root().join("system.xml");
    let image = xtask::sel4::build_image(&system).unwrap_or_else(|e| panic!("building the seL4 image: {e}"));
    let xml = std::fs::read_to_string(&system).unwrap();
    let sys = sdf::parse(&xml).unwrap();

    let mut q = Qemu::boot(&image.loader);
    q.wait_prompts(1, BOOT_TIMEOUT);
    let mut counts = Vec::new();
    for round in 0..2 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        q.send("status\n");
        q.wait_prompts(round + 2, REPLY_TIMEOUT);
        let t = q.transcript();
        let rows = last_table(&t);
        let row = |pd: &str| rows.iter().find(|r| r[0] == pd).cloned();
        for pd in &sys.pds {
            if row(&pd.name).is_none() {
                q.fail(&format!("PD {} is missing from the status table", pd.name));
            }
        }
        let kv = row("kv0_a").unwrap();
        if kv.get(4).map(String::as_str) != Some("live") {
            q.fail(&format!("kv0_a is not live: {kv:?}"));
        }
        match verified(&row("client0").unwrap()) {
            Some((n, 0)) if n > 0 => counts.push(n),
            other => q.fail(&format!("client0 should have verified>0 and wrong=0, has {other:?}")),
        }
    }
    if counts[1] <= counts[0] {
        q.fail(&format!("client0's verified count did not grow: {counts:?}"));
    }
    let _ = writeln!(std::io::stderr(), "seL4 system on QEMU: client0 verified {} -> {}", counts[0], counts[1]);
}
