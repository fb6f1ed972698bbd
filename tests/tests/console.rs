//! The console under hostile typing: lines of any length, and many commands
//! typed faster than they are answered, while the clients keep the system
//! busy. Every line gets its answer and the console never wedges.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use system_tests::{parse_status, System};

/// Kills the system if the test is still running after `limit`: a wedged
/// console stops reading its input, and a write to it would block for ever.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn new(sys: &System, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let (flag, pid) = (done.clone(), sys.pid() as libc::pid_t);
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !flag.load(Ordering::Relaxed) {
                eprintln!("watchdog: the system did not finish within {limit:?}; killing it");
                // SAFETY: signals our own child process.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Each line is typed while the manager is busy (an update waiting for a
/// module that never quiesces), so the queues between the terminal and the
/// manager fill up and the terminal has nothing more to say before the
/// manager reads again. The manager echoes nothing of an over-long line;
/// it must still drain every queue on the way and answer both lines.
#[test]
fn a_line_of_any_length_is_refused_and_the_console_answers_the_next_command() {
    let mut sys = System::boot(Some(&system_tests::system_with_store("test-images.bin")));
    let _watchdog = Watchdog::new(&sys, Duration::from_secs(300));
    let pds = sys.status().len();
    assert!(sys.command("update kv kv-never-ready").contains("done:"));
    for n in [2_500, 10_000, 100_000] {
        sys.type_bytes(b"update kv kv-v3 --timeout 1500\n");
        sys.wait_for("  build     ok", Duration::from_secs(30));
        // Longer than the queues on the way (2 KiB each).
        sys.type_bytes(format!("{}\nstatus\n", "a".repeat(n)).as_bytes());
        let out = sys.next_output(Duration::from_secs(60));
        assert!(out.contains("quiesce   FAILED") && out.contains("rolled back"), "{out}");
        let out = sys.next_output(Duration::from_secs(60));
        assert!(out.contains("error: line too long (at most 160 characters)"), "{n} characters: {out}");
        let table = sys.next_output(Duration::from_secs(60));
        assert!(table.starts_with("status\n"), "{n} characters, then status: {table}");
        assert_eq!(parse_status(&table).len(), pds, "{n} characters, then status: a row per PD:\n{table}");
    }
    assert_eq!(sys.shutdown(), 0, "a clean halt");
}

/// Many commands typed faster than they are answered, with the clients
/// running: every one is echoed and answered, in order. Prints the worst
/// time from typing a command to its answer.
#[test]
fn two_thousand_commands_typed_fast_under_load_are_all_answered() {
    const TOTAL: usize = 2_000;
    /// Commands typed in one write, before the first answer is read.
    const BATCH: usize = 100;
    let mut sys = System::boot(None);
    let _watchdog = Watchdog::new(&sys, Duration::from_secs(900));
    let pds = sys.status().len();
    // A full history first, so that `log all` prints more than the
    // console's queues hold (64 entries, about 10 KB).
    let mut updates = String::new();
    for k in 0..70 {
        updates.push_str(if k % 2 == 0 { "update kv kv-v2\n" } else { "rollback kv\n" });
    }
    sys.type_bytes(updates.as_bytes());
    for k in 0..70 {
        let out = sys.next_output(Duration::from_secs(60));
        assert!(out.contains("done: kv0 runs"), "update {k}: {out}");
    }
    // The 70 updates and the boot of each instance.
    let all = 70 + xtask::description().instances().count();
    let commands = ["status", "log", "images", "frobnicate", "log all", "status now", "log 3", "version"];
    let start = Instant::now();
    let (mut worst, mut worst_at) = (Duration::ZERO, 0);
    let mut k = 0;
    while k < TOTAL {
        let batch: Vec<&str> = (k..(k + BATCH).min(TOTAL)).map(|i| commands[i % commands.len()]).collect();
        let typed = Instant::now();
        sys.type_bytes(batch.iter().map(|c| format!("{c}\n")).collect::<String>().as_bytes());
        for cmd in batch {
            let out = sys.next_output(Duration::from_secs(60));
            let took = typed.elapsed();
            if took > worst {
                (worst, worst_at) = (took, k);
            }
            let (echo, answer) = out.split_once('\n').unwrap_or((&out, ""));
            assert_eq!(echo, cmd, "command {k} echoed");
            let ok = match cmd {
                "status" => parse_status(answer).len() == pds,
                "log" => answer.lines().count() == 22 && answer.contains("the last 20 of 64 kept"),
                "log 3" => answer.lines().count() == 5 && answer.contains(&format!("{all} update(s) in all)")),
                "log all" => answer.lines().count() == 66 && answer.ends_with(&format!("{all} update(s) in all)\n")),
                "images" => answer.starts_with("IMAGE ") && answer.contains("kv-v2"),
                "version" => answer.starts_with("update manager"),
                "frobnicate" => answer == "error: unknown command 'frobnicate' (try 'help')\n",
                _ => answer == "error: 'status' takes no arguments (got 'now')\n",
            };
            assert!(ok, "command {k} '{cmd}' answered:\n{answer}");
            k += 1;
        }
    }
    let rows = sys.status();
    eprintln!(
        "{TOTAL} commands in {:.1?}; worst answer {worst:.1?} (command {worst_at}, {BATCH} typed at once)",
        start.elapsed()
    );
    assert!(worst < Duration::from_secs(30), "an answer took {worst:?}");
    for c in rows.iter().filter(|r| r.service == "client") {
        assert_eq!((c.detail_num("wrong"), c.detail_num("failed")), (Some(0), Some(0)), "{c:?}");
    }
    assert_eq!(sys.shutdown(), 0);
}

/// What `printf '<2500 x a>\nstatus\n' | cargo xtask run` does: the input
/// is all there before the console reads it, so the queues between the
/// terminal and the manager fill up while the system boots, and the
/// terminal has nothing more to say once they are full. The console must
/// drain them, answer both lines and halt at the end of the input. (A
/// line of 2,500 characters wedged the console this way: the manager
/// echoes nothing of an over-long line, so nobody told the serial service
/// that its queue to the manager had room again.)
#[test]
fn long_lines_piped_at_boot_are_refused_and_the_system_halts_cleanly() {
    let (code, text) = run_piped(&format!("{}\nstatus\n", "a".repeat(2_500)), Duration::from_secs(120));
    let code = code.unwrap_or_else(|| panic!("the console wedged; it printed:\n{text}"));
    assert_eq!(text.matches("error: line too long (at most 160 characters)").count(), 1, "{text}");
    let tables = text.lines().filter(|l| l.starts_with("PD ") && l.contains(" SERVICE ")).count();
    assert_eq!(tables, 1, "a status table:\n{text}");
    assert!(text.contains("end of input: halting"), "{text}");
    assert_eq!(code, 0, "{text}");
}

/// Boots system.xml with `input` on its standard input (a file: all of it
/// readable at once) and waits, at most `limit`, for the system to halt.
/// Returns the exit code (`None`: killed at the limit) and the output.
fn run_piped(input: &str, limit: Duration) -> (Option<i32>, String) {
    let dir = system_tests::host_image();
    let path = std::env::temp_dir().join(format!("console-input-{}", std::process::id()));
    std::fs::write(&path, input).unwrap();
    let mut child = std::process::Command::new(dir.parent().unwrap().join("host-runtime"))
        .arg(xtask::workspace_root().join("system.xml"))
        .arg("--search-path")
        .arg(dir)
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&path);
    (code, reader.join().unwrap())
}
