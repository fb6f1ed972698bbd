//! A harness that boots a system on the host runtime with the console on
//! pipes, types commands and reads the answers, as an operator would.
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const PROMPT: &str = "upd> ";

/// Builds the host image once per test binary: the debug build for tests,
/// the release build for benchmarks (built with optimisations themselves).
pub mod systems;

pub fn host_image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| xtask::build_host(!cfg!(debug_assertions)).expect("building the host image"))
}

/// The host runtime running `system.xml` with its console at `console`
/// (`unix:PATH`, `pty:LINK`) and its output discarded, for the tests that
/// drive it with `umctl`; killed when dropped.
pub struct ConsoleRuntime(Child);

impl ConsoleRuntime {
    pub fn start(console: &str) -> ConsoleRuntime {
        let image_dir = host_image();
        ConsoleRuntime(
            Command::new(image_dir.parent().unwrap().join("host-runtime"))
                .arg(xtask::workspace_root().join("system.xml"))
                .args(["--search-path", image_dir.to_str().unwrap(), "--console", console])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for ConsoleRuntime {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A program's stdout and stderr, as one text.
pub fn output_text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A kv version that exists nowhere in a system booted from `system.xml`:
/// kv-v4 built and signed with the development key, in `dir`. Returns the
/// bundle's path.
pub fn signed_kv_v4(dir: &Path) -> PathBuf {
    let image = dir.join("kv-v4.so");
    std::fs::write(&image, xtask::build_module("kv-v4").unwrap()).unwrap();
    let bundle = dir.join("kv-v4.bundle");
    xtask::keys::sign(&xtask::workspace_root().join("keys/dev.key"), bundle::Target::Host, &image, &bundle).unwrap();
    bundle
}

pub struct System {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<Vec<u8>>,
    /// Every byte the console sent (text and upload answers).
    raw: Vec<u8>,
    raw_cursor: usize,
    frames: upload::Decoder,
    /// Everything the console printed so far.
    pub transcript: String,
    /// How much of the transcript earlier waits consumed.
    cursor: usize,
    /// Lines the PDs and the runtime logged on stderr.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// One row of the `status` table.
#[derive(Debug, Clone)]
pub struct Row {
    pub pd: String,
    pub service: String,
    pub version: String,
    pub slot: String,
    pub state: String,
    pub calls: String,
    pub faults: u32,
    pub detail: String,
}

impl Row {
    /// A `key=value` field of the detail column, as a number.
    pub fn detail_num(&self, key: &str) -> Option<u64> {
        self.detail.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }
}

/// Parses the table `status` prints (header line first).
pub fn parse_status(text: &str) -> Vec<Row> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("PD ")).skip(1);
    let mut rows = Vec::new();
    for l in lines.by_ref() {
        let cols: Vec<&str> = l.split_whitespace().collect();
        if cols.len() < 7 || l.starts_with(PROMPT.trim_end()) {
            break;
        }
        rows.push(Row {
            pd: cols[0].into(),
            service: cols[1].into(),
            version: cols[2].into(),
            slot: cols[3].into(),
            state: cols[4].into(),
            calls: cols[5].into(),
            faults: cols[6].parse().unwrap_or(u32::MAX),
            detail: cols[7..].join(" "),
        });
    }
    rows
}

/// The repository's system.xml, with its image store swapped for `store`
/// (e.g. `test-images.bin`, which also holds the deliberately faulty
/// modules), written to a scratch file. One source of truth for both.
pub fn system_with_store(store: &str) -> PathBuf {
    let xml = std::fs::read_to_string(xtask::workspace_root().join("system.xml")).unwrap();
    let patched = xml.replace(r#"prefill_path="images.bin""#, &format!(r#"prefill_path="{store}""#));
    assert_ne!(xml, patched, "system.xml has an images.bin prefill");
    let dir = std::env::temp_dir().join(format!("system-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("system-{store}.xml"));
    std::fs::write(&path, patched).unwrap();
    path
}

/// The client rows of a status table.
pub fn clients(rows: &[Row]) -> Vec<Row> {
    rows.iter().filter(|r| r.service == "client").cloned().collect()
}

impl System {
    /// Boots `system` (default: the repository's system.xml) and waits for
    /// the first prompt.
    pub fn boot(system: Option<&Path>) -> System {
        System::boot_with(system, &[], &[])
    }

    /// As [`System::boot`], with more arguments for the host runtime (e.g.
    /// `--disk PATH`) and environment variables for it and its PDs.
    pub fn boot_with(system: Option<&Path>, args: &[&std::ffi::OsStr], env: &[(&str, &std::ffi::OsStr)]) -> System {
        let dir = host_image();
        let sys = system.map(Path::to_owned).unwrap_or_else(|| xtask::workspace_root().join("system.xml"));
        let mut child = Command::new(dir.parent().unwrap().join("host-runtime"))
            .arg(&sys)
            .arg("--search-path")
            .arg(dir)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting host-runtime");
        let (tx, rx) = channel();
        let mut stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (err, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take();
        let mut s = System {
            child,
            stdin,
            out: rx,
            raw: Vec::new(),
            raw_cursor: 0,
            frames: upload::Decoder::default(),
            transcript: String::new(),
            cursor: 0,
            log,
        };
        s.wait_for(PROMPT, Duration::from_secs(30));
        s.unread_prompt();
        s.wait_for_clients();
        s
    }

    /// Waits (bounded) until every client has published its counters, so
    /// that tests compare numbers, not "no stats yet".
    fn wait_for_clients(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = self.status();
            if clients(&rows).iter().all(|r| r.detail_num("verified").is_some()) {
                return;
            }
            if Instant::now() > deadline {
                self.fail("a client never published its counters");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n--- console ---\n{}\n--- log (last 40 lines) ---\n{}",
            self.transcript,
            self.log.lock().unwrap().iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
        )
    }

    /// Waits until the console output not yet consumed contains `pattern`;
    /// returns that output up to and including it.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.transcript[self.cursor..].find(pattern) {
                let end = self.cursor + i + pattern.len();
                let got = self.transcript[self.cursor..end].to_owned();
                self.cursor = end;
                return got;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                self.fail(&format!("no '{pattern}' within {timeout:?}"))
            };
            if !self.pump(left) {
                self.fail(&format!("no '{pattern}' within {timeout:?}"));
            }
        }
    }

    /// Takes one chunk of console output, if one comes within `timeout`.
    fn pump(&mut self, timeout: Duration) -> bool {
        match self.out.recv_timeout(timeout) {
            Ok(chunk) => {
                self.transcript.push_str(&String::from_utf8_lossy(&chunk));
                self.raw.extend_from_slice(&chunk);
                true
            }
            Err(_) => false,
        }
    }

    /// The host runtime's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types raw bytes on the console.
    pub fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("console still open");
        stdin.write_all(bytes).and_then(|()| stdin.flush()).expect("console write");
    }

    /// Runs one command and returns its output (without the next prompt).
    /// Asynchronous reports (a fault, with its own prompt) that come before
    /// the command's echo are skipped.
    pub fn command(&mut self, line: &str) -> String {
        self.type_bytes(format!("{line}\n").as_bytes());
        self.wait_for(&format!("{PROMPT}{line}\n"), Duration::from_secs(30));
        let out = self.wait_for(PROMPT, Duration::from_secs(60));
        self.unread_prompt();
        out.strip_suffix(PROMPT).unwrap_or(&out).to_owned()
    }

    /// The output up to the next prompt, after bytes typed with
    /// [`System::type_bytes`] (the prompt they were typed at is skipped).
    pub fn next_output(&mut self, timeout: Duration) -> String {
        if self.transcript[self.cursor..].starts_with(PROMPT) {
            self.cursor += PROMPT.len();
        }
        let out = self.wait_for(PROMPT, timeout);
        self.unread_prompt();
        out.strip_suffix(PROMPT).unwrap_or(&out).to_owned()
    }

    /// Leaves the last prompt unconsumed, so the next command's echo is
    /// found right after it.
    fn unread_prompt(&mut self) {
        if self.transcript[..self.cursor].ends_with(PROMPT) {
            self.cursor -= PROMPT.len();
        }
    }

    pub fn status(&mut self) -> Vec<Row> {
        let text = self.command("status");
        let rows = parse_status(&text);
        if rows.is_empty() {
            self.fail("status printed no table");
        }
        rows
    }

    /// Closes the console (end of input) and returns the exit code.
    pub fn shutdown(mut self) -> i32 {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                // Collect the last output for the caller's assertions.
                while self.pump(Duration::from_millis(200)) {}
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                self.fail("the system did not shut down at end of input");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The console as the upload protocol's line: frames out on stdin, the
/// manager's answer frames picked out of everything it prints.
impl upload::send::Line for System {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.type_bytes(bytes);
        Ok(())
    }

    fn recv_frame(&mut self, timeout: Duration) -> std::io::Result<Option<(upload::Kind, u16, Vec<u8>)>> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.raw_cursor < self.raw.len() {
                let b = self.raw[self.raw_cursor];
                self.raw_cursor += 1;
                if let upload::Decoded::Frame(f) = self.frames.feed(b) {
                    return Ok(Some((f.kind, f.seq, f.payload.to_vec())));
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return Ok(None) };
            if !self.pump(left) {
                return Ok(None);
            }
        }
    }
}

pub fn client_totals(rows: &[Row]) -> Vec<(String, u64, u64, u64, u64)> {
    clients(rows)
        .iter()
        .map(|r| {
            let n = |k: &str| r.detail_num(k).unwrap_or_else(|| panic!("{} has no {k}: {r:?}", r.pd));
            (r.pd.clone(), n("verified"), n("wrong"), n("failed"), n("audits"))
        })
        .collect()
}

/// Every client makes progress after `before`, including at least one
/// full audit of its keyspace against its model (polled: on a loaded
/// machine a client may not have run for a while, so only a client that
/// stays stuck for 10 s fails), and none saw a wrong reply or a failed
/// call. Returns the status it judged.
pub fn assert_clean_progress(sys: &mut System, before: &[Row]) -> Vec<Row> {
    let b = client_totals(before);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let after = sys.status();
        let a = client_totals(&after);
        assert_eq!(a.len(), xtask::description().clients.len(), "every client of services.toml");
        for ((name, _, _, _, au0), (_, _, wrong, failed, au1)) in b.iter().zip(&a) {
            assert!(au1 >= au0, "{name}: audits");
            assert_eq!((*wrong, *failed), (0, 0), "{name}: no wrong replies and no failed calls");
        }
        let stuck: Vec<_> = b
            .iter()
            .zip(&a)
            .filter(|(x, y)| y.1 <= x.1 || y.4 <= x.4)
            .map(|(x, y)| (&x.0, (x.1, y.1), (x.4, y.4)))
            .collect();
        if stuck.is_empty() {
            return after;
        }
        assert!(
            Instant::now() < deadline,
            "verified replies and audits must grow; for 10 s they did not (client, verified, audits): {stuck:?}"
        );
    }
}

/// Totals per client: (PD, verified, wrong, failed, audits).
pub type Totals = Vec<(String, u64, u64, u64, u64)>;

/// Waits, for at most `limit`, until each of `clients` clients served
/// more verified calls than in `before`; none may have seen a wrong reply
/// or a failed call meanwhile. Returns the totals it judged.
pub fn clients_progressed(sys: &mut System, before: &Totals, clients: usize, limit: Duration) -> Totals {
    let deadline = Instant::now() + limit;
    loop {
        let now = client_totals(&sys.status());
        for (name, _, wrong, failed, _) in &now {
            assert_eq!((*wrong, *failed), (0, 0), "{name}: no wrong replies and no failed calls");
        }
        if now.len() == clients && before.iter().zip(&now).all(|(b, n)| n.1 > b.1) {
            return now;
        }
        assert!(Instant::now() < deadline, "the clients made no progress in {limit:?}: {before:?} -> {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// xorshift64*: a fixed sequence per seed, so a failing run of a test that
/// draws its events from it can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
