//! The host runtime, booted for real: one process per PD, shared regions,
//! notifications, PPC, faults, stop/restart. Each test writes a small
//! system description and reads the PDs' `PASS`/`FAIL` lines.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("host-runtime-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn boot(name: &str, xml: &str) -> Running {
    let dir = scratch(name);
    let sys = dir.join("system.xml");
    std::fs::write(&sys, xml).unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_test_pd")).parent().unwrap().to_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_host-runtime"))
        .arg(&sys)
        .arg("--search-path")
        .arg(&bin_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Running { child, lines: rx, seen: Vec::new() }
}

impl Running {
    /// Waits for a line containing `pattern`; fails with the transcript.
    fn expect(&mut self, pattern: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    assert!(!line.contains("FAIL"), "a PD failed: {line}\n{}", self.seen.join("\n"));
                    self.seen.push(line.clone());
                    if line.contains(pattern) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with '{pattern}' within 10 s; got:\n{}", self.seen.join("\n"));
    }

    fn count(&self, pattern: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(pattern)).count()
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "runtime did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pd(name: &str, prio: u32, body: &str) -> String {
    format!(
        r#"<protection_domain name="{name}" priority="{prio}"><program_image path="test_pd"/>{body}</protection_domain>"#
    )
}

fn child(name: &str, id: u32, prio: u32, body: &str) -> String {
    format!(
        r#"<protection_domain name="{name}" id="{id}" priority="{prio}"><program_image path="test_pd"/>{body}</protection_domain>"#
    )
}

fn chan(a: &str, ida: u32, pp: bool, b: &str, idb: u32) -> String {
    format!(r#"<channel><end pd="{a}" id="{ida}" pp="{pp}"/><end pd="{b}" id="{idb}"/></channel>"#)
}

#[test]
fn ppc_carries_64_words_and_notifications_cross_processes() {
    let xml = format!(
        "<system>{}{}{}{}{}</system>",
        pd("caller", 10, ""),
        pd("echo", 20, ""),
        pd("idle", 30, ""),
        chan("caller", 1, true, "echo", 2),
        chan("caller", 2, false, "idle", 1),
    );
    let mut r = boot("ppc", &xml);
    r.expect("PASS ppc with 64 words");
    r.expect("PASS call without pp refused");
    r.expect("PASS notification round trip");
}

#[test]
fn ppc_to_equal_or_lower_priority_is_refused_at_boot() {
    for (callee_prio, what) in [(10, "equal"), (5, "lower")] {
        let xml = format!(
            "<system>{}{}{}</system>",
            pd("caller", 10, ""),
            pd("echo", callee_prio, ""),
            chan("caller", 1, true, "echo", 1)
        );
        let mut r = boot(&format!("prio-{what}"), &xml);
        let line = r.expect("error:");
        assert!(line.contains("<channel>") && line.contains("strictly higher"), "{what}: {line}");
        assert_eq!(r.wait_exit(), 1, "{what} priority must not boot");
    }
}

#[test]
fn read_only_region_is_readable_but_not_writable() {
    let xml = format!(
        r#"<system><memory_region name="data" size="0x1000"/>{}</system>"#,
        pd("parent", 50, &child("writer", 1, 10, r#"<map mr="data" vaddr="0x30000000" perms="r" setvar_vaddr="ro"/>"#)),
    );
    let mut r = boot("readonly", &xml);
    r.expect("read 0x0 from the read-only region");
    // SIGSEGV (11) is reported to the parent as an exception.
    let line = r.expect("PASS fault from child 1");
    assert!(line.contains("exception 11"), "{line}");
}

#[test]
fn panics_and_kills_reach_the_parent_which_can_restart() {
    let xml = format!(
        "<system>{}</system>",
        pd("parent", 50, &format!("{}{}", child("crasher", 3, 10, ""), child("victim", 4, 10, ""))),
    );
    let mut r = boot("faults", &xml);
    // The parent restarts the crasher once (first fault), then leaves it.
    let first = r.expect("PASS fault from child 3");
    assert!(first.contains("abort"), "{first}");
    r.expect("PASS fault from child 3");
    let victim = r
        .seen
        .iter()
        .find(|l| l.starts_with("[victim] started pid"))
        .cloned()
        .unwrap_or_else(|| r.expect("[victim] started pid"));
    let pid: i32 = victim.rsplit(' ').next().unwrap().parse().unwrap();
    // SAFETY: killing the test's own grandchild.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let line = r.expect("PASS fault from child 4");
    assert!(line.contains("exception 9"), "{line}");
    assert_eq!(r.count("[crasher] started"), 2, "restarted exactly once:\n{}", r.seen.join("\n"));
}

#[test]
fn parent_stops_and_restarts_a_child() {
    let xml = format!(
        "<system>{}{}</system>",
        pd("parent", 50, &child("sleeper", 7, 10, "")),
        chan("parent", 1, false, "sleeper", 1)
    );
    let mut r = boot("restart", &xml);
    r.expect("PASS stopped child 7");
    r.expect("PASS restarted child 7");
    r.expect("PASS restarted child 7 is running again");
    assert_eq!(r.count("[sleeper] started"), 2);
}

#[test]
fn halt_stops_every_pd_and_exits_zero() {
    let xml = format!("<system>{}{}</system>", pd("finisher", 10, ""), pd("echo", 20, ""));
    let mut r = boot("halt", &xml);
    assert_eq!(r.wait_exit(), 0);
}

#[test]
fn each_pd_process_is_named_after_its_pd() {
    let xml = format!("<system>{}{}</system>", pd("idle", 30, ""), pd("idle2", 20, ""));
    let r = boot("names", &xml);
    let runtime = r.child.id();
    // argv[0] of every child of the runtime, once both have started.
    let deadline = Instant::now() + Duration::from_secs(10);
    let names = loop {
        let children = std::fs::read_to_string(format!("/proc/{runtime}/task/{runtime}/children")).unwrap_or_default();
        let mut names: Vec<String> = children
            .split_whitespace()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| String::from_utf8_lossy(c.split(|&b| b == 0).next().unwrap_or_default()).into_owned())
            .collect();
        names.sort();
        // A child between its fork and its exec still shows the runtime's
        // command line: look again until both have started.
        if names == ["idle", "idle2"] || Instant::now() > deadline {
            break names;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(names, ["idle", "idle2"]);
}
