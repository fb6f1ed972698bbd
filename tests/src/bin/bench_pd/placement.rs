//! Where the PPC benchmark's processes run. Unpinned, each boot of the
//! system places the client and the two servers it compares anew, and on
//! a shared two-core machine a call to a server that happens to share the
//! client's core costs more than one to a server on the other core: a
//! boot's ratio moved 0.88-1.36 that way. Pinned, the client runs on one
//! core and every server it calls on the other, so both sides of the ratio
//! make the same cross-core call and differ only by what they run.
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Pins this process to the first core it may use and every thread of the
/// sibling PDs named in `servers` (the host runtime sets a PD's `argv[0]` to
/// its name) to the second. Returns the two cores, or `None` with fewer
/// than two cores (then nothing is pinned: both sides share what there is).
pub fn client_and_servers(servers: &[&str]) -> Option<(usize, usize)> {
    let allowed = affinity(0)?;
    let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|&c| cpu_isset(&allowed, c)).collect();
    let (&client, &server) = (cores.first()?, cores.get(1)?);
    // SAFETY: getppid has no preconditions.
    let runtime = unsafe { libc::getppid() };
    // The runtime starts the PDs one after another: wait (bounded) until
    // every server named has started.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pinned = HashSet::new();
    while pinned.len() < servers.len() {
        for pid in children(runtime) {
            let Some(name) = argv0(pid) else { continue };
            if servers.contains(&name.as_str()) && !pinned.contains(&name) {
                for tid in threads(pid) {
                    set_affinity(tid, server);
                }
                pinned.insert(name);
            }
        }
        assert!(Instant::now() < deadline, "servers {servers:?} not found among the runtime's children");
        std::thread::sleep(Duration::from_millis(5));
    }
    set_affinity(0, client);
    Some((client, server))
}

fn affinity(pid: libc::pid_t) -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the call writes at
    // most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(pid, std::mem::size_of_val(&set), &mut set) == 0).then_some(set)
    }
}

fn cpu_isset(set: &libc::cpu_set_t, cpu: usize) -> bool {
    // SAFETY: `cpu` is below CPU_SETSIZE.
    unsafe { libc::CPU_ISSET(cpu, set) }
}

fn set_affinity(tid: libc::pid_t, cpu: usize) {
    // SAFETY: a set built here, its size passed; a thread that has ended
    // meanwhile only makes the call fail, which is harmless.
    unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        libc::sched_setaffinity(tid, std::mem::size_of_val(&one), &one);
    }
}

fn children(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

fn threads(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

fn argv0(pid: libc::pid_t) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let first = cmdline.split(|&b| b == 0).next()?;
    Some(String::from_utf8_lossy(first).into_owned())
}
