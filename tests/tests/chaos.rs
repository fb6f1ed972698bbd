//! The chaos soak: thousands of random operator events under four clients
//! that check every reply: updates, rollbacks (on probation and after),
//! acceptances, every way a new version can misbehave (before its commit,
//! and after it: spinning, faulting, panicking), refused uploads, and
//! commands typed ahead of each other. Nothing may be lost: 0 wrong and
//! 0 failed calls, and full audits at the end. It reports the number of
//! events, the console's worst answer time and the recoveries from hangs.
//!
//! `CHAOS_EVENTS` (default 2000) and `CHAOS_SEED` change the run.
use bundle::Target;
use std::time::{Duration, Instant};
use system_tests::{assert_clean_progress, client_totals, system_with_store, Rng, System};
use upload::send::{send_bundle, Line};

/// A line that is cut after `left` sends: a broken-off upload.
struct CutLine<'a> {
    sys: &'a mut System,
    left: usize,
}

impl Line for CutLine<'_> {
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.left == 0 {
            return Err(std::io::Error::other("the line was cut"));
        }
        self.left -= 1;
        self.sys.send(bytes)
    }
    fn recv_frame(&mut self, timeout: Duration) -> std::io::Result<Option<(upload::Kind, u16, Vec<u8>)>> {
        self.sys.recv_frame(timeout)
    }
}

/// What an event expects of the console's answer.
enum Expect {
    /// Committed: a `done:` line.
    Done,
    /// Refused or failed before the commit, rolled back.
    RolledBack,
    /// Committed, then rolled back on probation when the new version
    /// misbehaved (a hang: the watchdog's report names the recovery).
    CommittedThenRolledBack { hang: bool },
    /// Anything but an `error:` (status, accept, rollback with nothing to
    /// go back to, ...).
    Answer,
}

/// The failures before a commit, each with what the update prints.
const FAIL_BEFORE_COMMIT: &[&str] =
    &["kv-fault-init", "kv-abort-init", "kv-bad-import", "kv-fault-import", "kv-abort-import", "kv-needs-timer"];

fn signed(package: &str, key: &std::path::Path) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join(format!("{package}.so"));
    std::fs::write(&image, xtask::build_module(package).unwrap()).unwrap();
    let out = dir.join(format!("{package}.bundle"));
    xtask::keys::sign(key, Target::Host, &image, &out).unwrap();
    std::fs::read(out).unwrap()
}

/// A random event; `late`: may be a version that misbehaves after its
/// commit (not in type-ahead, where the next line could roll it back
/// before it misbehaves).
fn pick(rng: &mut Rng, late: bool) -> (String, Expect) {
    let r = rng.below(if late { 100 } else { 75 });
    let line = |s: String, e| (s, e);
    match r {
        0..=29 => line(format!("update kv kv-v{}", 2 + rng.below(2)), Expect::Done),
        30..=49 => line("rollback kv".into(), Expect::Answer),
        50..=54 => line("accept kv".into(), Expect::Answer),
        // A spin costs the watchdog's deadline (a second or two): rarer.
        55..=56 => {
            let img = ["kv-spin-init", "kv-spin-import"][rng.below(2) as usize];
            line(format!("update kv {img}"), Expect::RolledBack)
        }
        57..=74 => {
            let img = FAIL_BEFORE_COMMIT[rng.below(FAIL_BEFORE_COMMIT.len() as u64) as usize];
            line(format!("update kv {img}"), Expect::RolledBack)
        }
        75..=84 => {
            let img = ["kv-late-fault", "kv-late-panic"][rng.below(2) as usize];
            line(format!("update kv {img}"), Expect::CommittedThenRolledBack { hang: false })
        }
        85..=86 => {
            let img = ["kv-late-spin", "kv-spin-notified"][rng.below(2) as usize];
            line(format!("update kv {img}"), Expect::CommittedThenRolledBack { hang: true })
        }
        _ => line("status".into(), Expect::Answer),
    }
}

#[test]
fn chaos_soak_under_load_loses_nothing() {
    let events: usize = std::env::var("CHAOS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let seed: u64 = std::env::var("CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x0005_eedc_4a05);
    eprintln!("chaos: {events} events, seed {seed} (CHAOS_SEED to replay)");
    let dev_key = xtask::workspace_root().join("keys/dev.key");
    let stranger_dir = std::env::temp_dir().join(format!("chaos-keys-{}", std::process::id()));
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let (stranger, _) = xtask::keys::keygen(&stranger_dir.join("stranger")).unwrap();
    let forged = signed("kv-v4", &stranger);
    let genuine = signed("kv-v4", &dev_key);
    let mut corrupt = genuine.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0x40;

    let mut sys = System::boot(Some(&system_with_store("test-images.bin")));
    // A window long enough that every misbehaving version misbehaves while
    // on probation, whatever the load (the journal's room bounds it too).
    assert!(sys.command("probation 60000").contains("probation for the next updates"));
    std::thread::sleep(Duration::from_millis(300));
    let before = sys.status();
    let images = sys.command("images");
    let mut rng = Rng(seed | 1);
    let (mut worst_answer, mut hang_recoveries, mut counts) = (Duration::ZERO, Vec::new(), [0usize; 6]);
    let start = Instant::now();
    let (mut done, mut log_seen, mut recent) = (0, 0, Vec::new());
    while done < events {
        match rng.below(40) {
            // Refused uploads (a stranger's signature, a damaged bundle),
            // and a genuine one broken off half way: none changes anything.
            0 => {
                let t = Instant::now();
                match rng.below(3) {
                    2 => {
                        let left = 1 + rng.below(40) as usize;
                        let cut = send_bundle(&mut CutLine { sys: &mut sys, left }, &genuine, |_, _| {});
                        assert!(cut.is_err(), "event {done}: the cut upload finished: {cut:?}");
                    }
                    k => {
                        let bundle = if k == 0 { &forged } else { &corrupt };
                        let out = send_bundle(&mut sys, bundle, |_, _| {}).unwrap();
                        assert!(!out.admitted, "event {done}: a bad bundle was admitted: {out:?}");
                    }
                }
                worst_answer = worst_answer.max(t.elapsed());
                // Late answers to resent frames may follow, even between a
                // prompt and the next echo: read past them to an answer.
                sys.type_bytes(b"version\n");
                sys.wait_for("update manager 0.1.0,", Duration::from_secs(30));
                sys.wait_for("\n", Duration::from_secs(10));
                counts[5] += 1;
                done += 1;
                continue;
            }
            // Type-ahead: three lines at once, answered in order.
            1..=4 => {
                let picks: Vec<(String, Expect)> = (0..3).map(|_| pick(&mut rng, false)).collect();
                let text: String = picks.iter().map(|(l, _)| format!("{l}\n")).collect();
                sys.type_bytes(text.as_bytes());
                let at = start.elapsed();
                for (line, expect) in &picks {
                    let mut out = sys.next_output(Duration::from_secs(60));
                    // A probation that ended on its own says so between two
                    // answers, with a prompt of its own.
                    while out.trim().is_empty() || out.trim_start().starts_with("probation over") {
                        out = sys.next_output(Duration::from_secs(60));
                    }
                    check(done, line, expect, &out, &mut sys, &mut hang_recoveries, &mut counts);
                    recent.push(format!("{at:.1?}: event {done}: {line} (typed ahead)"));
                    complaints_after(done, line, &sys, &mut log_seen, &recent);
                    done += 1;
                }
                continue;
            }
            _ => {}
        }
        let (line, expect) = pick(&mut rng, true);
        let t = Instant::now();
        let at = start.elapsed();
        let out = sys.command(&line);
        if matches!(expect, Expect::Answer) {
            worst_answer = worst_answer.max(t.elapsed());
        }
        check(done, &line, &expect, &out, &mut sys, &mut hang_recoveries, &mut counts);
        recent.push(format!("{at:.1?}: event {done}: {line} (took {:.1?})", t.elapsed()));
        complaints_after(done, &line, &sys, &mut log_seen, &recent);
        done += 1;
        if done % 200 == 0 {
            let t = Instant::now();
            let rows = sys.status();
            worst_answer = worst_answer.max(t.elapsed());
            for (name, _, wrong, failed, _) in client_totals(&rows) {
                if (wrong, failed) != (0, 0) {
                    let tail: String =
                        sys.transcript.chars().rev().take(20_000).collect::<Vec<_>>().into_iter().rev().collect();
                    let log = log_excerpt(&sys.log.lock().unwrap());
                    panic!("after event {done}: {name}: wrong {wrong}, failed {failed}\n--- console ---\n{tail}\n--- log ---\n{log}");
                }
            }
        }
    }
    // The same images (the floors, which acceptances raised, aside).
    let listed = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("version floors:"))
            .map(|l| l.trim_end_matches("(below the version floor)").trim_end().to_owned())
            .collect()
    };
    assert_eq!(listed(&sys.command("images")), listed(&images), "no upload, refused or broken off, changed the images");
    let end = sys.status();
    let after = assert_clean_progress(&mut sys, &end);
    for ((name, v0, ..), (_, v1, ..)) in client_totals(&before).iter().zip(&client_totals(&after)) {
        assert!(v1 > v0, "{name}: verified replies grew ({v0} -> {v1})");
    }
    hang_recoveries.sort();
    eprintln!(
        "chaos: {done} events in {:.1?}: {} committed, {} refused or failed before the commit, {} rolled back on probation \
         ({} hangs), {} other commands, {} refused or broken-off uploads; console's worst answer {worst_answer:?}; \
         hang recovery (ms from the hang's start to serving again): {:?}",
        start.elapsed(),
        counts[0],
        counts[1],
        counts[2],
        hang_recoveries.len(),
        counts[3],
        counts[5],
        hang_recoveries,
    );
    assert!(counts[2] > 0 && !hang_recoveries.is_empty(), "the run covered misbehaviour after the commit");
    assert_eq!(sys.shutdown(), 0);
}

fn check(
    k: usize,
    line: &str,
    expect: &Expect,
    out: &str,
    sys: &mut System,
    recoveries: &mut Vec<u64>,
    counts: &mut [usize; 6],
) {
    let tail: String = sys.transcript.chars().rev().take(1500).collect::<Vec<_>>().into_iter().rev().collect();
    let ctx = || format!("event {k}: '{line}':\n{out}\n--- console's last output ---\n{tail}");
    if std::env::var_os("CHAOS_TRACE").is_some() {
        eprintln!("--- event {k}: {line}\n{out}");
    }
    assert!(!out.lines().any(|l| l.starts_with("error:")) || matches!(expect, Expect::Answer), "{}", ctx());
    match expect {
        // A version that passed its probation raised the floor.
        Expect::Done if out.contains("already runs") || out.contains("below the version floor") => counts[3] += 1,
        Expect::Done => {
            assert!(out.contains("done: kv0 runs") && out.contains("kv1 runs"), "{}", ctx());
            counts[0] += 1;
        }
        Expect::RolledBack => {
            assert!(out.contains("FAILED") && out.contains("nothing was lost"), "{}", ctx());
            counts[1] += 1;
        }
        Expect::CommittedThenRolledBack { hang } => {
            assert!(out.contains("done: kv0 runs"), "{}", ctx());
            // The misbehaviour comes after a few thousand calls (or the
            // first notification); the report follows on its own.
            let report = sys.wait_for("rolled back on probation", Duration::from_secs(60));
            // Up to the end of the report's lines; its prompt stays for the
            // next command.
            let mut rest = sys.wait_for("\ndone: ", Duration::from_secs(30));
            rest.push_str(&sys.wait_for("\n", Duration::from_secs(10)));
            if std::env::var_os("CHAOS_TRACE").is_some() {
                eprintln!("--- report:\n{report}{rest}");
            }
            assert!(!report.contains("state was lost") && !rest.contains("state was lost"), "{report}{rest}");
            // A panic that takes over a second to die (its backtrace
            // printed on a loaded machine) is stopped as a hang: then the
            // report ends with the recovery line too. (Only the trouble
            // that started the rollback has one, not a note about the
            // other instance's slot.)
            let seen_hang = report
                .lines()
                .any(|l| l.starts_with("fault: ") && l.ends_with("hung (inside one event for over 1000 ms)"));
            if *hang || seen_hang {
                let tail = sys.wait_for("after the hang began\n", Duration::from_secs(10));
                let ms = tail
                    .rsplit("serving again ")
                    .next()
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("no recovery time in: {tail}"));
                recoveries.push(ms);
            }
            counts[2] += 1;
        }
        Expect::Answer => counts[3] += 1,
    }
}

/// The PDs' log without panic backtraces (many faults are on purpose), and
/// every line where a client saw a wrong reply or a failed call.
fn log_excerpt(lines: &[String]) -> String {
    let noise =
        |l: &&String| l.starts_with(' ') || l.starts_with("stack backtrace") || l.starts_with("note: Some details");
    let kept: Vec<&String> = lines.iter().filter(|l| !noise(l)).collect();
    let clients: Vec<&&String> = kept.iter().filter(|l| l.contains("wrong reply") || l.contains(" failed: ")).collect();
    let tail: Vec<&&String> = kept.iter().rev().take(80).rev().collect();
    let join = |v: Vec<&&String>| v.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
    format!("{}\n--- clients' complaints ---\n{}", join(tail), join(clients))
}

/// Fails the soak at the first event after which a client complained in its
/// log (a wrong reply or a failed call), with what led up to it.
fn complaints_after(k: usize, line: &str, sys: &System, seen: &mut usize, recent: &[String]) {
    let log = sys.log.lock().unwrap();
    let new = &log[(*seen).min(log.len())..];
    if new.iter().any(|l| l.contains("wrong reply") || l.contains(" failed: ")) {
        let tail: String = sys.transcript.chars().rev().take(6000).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "a client complained by event {k} ('{line}')\n--- console ---\n{tail}\n--- log ---\n{}\n--- the last events ---\n{}",
            log_excerpt(&log),
            recent[recent.len().saturating_sub(15)..].join("\n")
        );
    }
    *seen = log.len();
}
