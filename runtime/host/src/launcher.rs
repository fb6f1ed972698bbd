//! The board: creates the kernel page and the memory regions, starts one
//! process per PD, and plays seL4's part in faults, stops and restarts.
use crate::config::{ChannelCfg, ChildCfg, MapCfg, PdConfig, ENV_VAR, FIRST_FD};
use crate::kernel::{call_state, fault_kind, request, run_state, KernelPage, KERNEL_PAGE_SIZE};
use crate::shm::{self, Mapping};
use sdf::System;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct RegionFds {
    rw: OwnedFd,
    ro: OwnedFd,
}

/// A booted system.
pub struct Board {
    sys: System,
    images: Vec<PathBuf>,
    kernel_fd: OwnedFd,
    kernel: Mapping,
    regions: Vec<RegionFds>,
    procs: Vec<Option<Child>>,
    /// Deaths reported by the reaper thread: (pid, status).
    deaths: Arc<Mutex<VecDeque<(u32, std::process::ExitStatus)>>>,
    /// The PD whose process gets the runtime's stdin (the UART driver).
    console_pd: Option<usize>,
}

/// Loads, checks and boots `path` with `search` paths.
pub fn boot(path: &std::path::Path, search: &[PathBuf]) -> Result<Board, String> {
    let xml = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut sys = sdf::parse(&xml).map_err(|e| format!("{}: {e}", path.display()))?;
    let images = sdf::check_files(&mut sys, search).map_err(|e| format!("{}: {e}", path.display()))?;
    sys.check().map_err(|e| format!("{}: {e}", path.display()))?;
    Board::new(sys, images, search)
}

impl Board {
    fn new(sys: System, images: Vec<PathBuf>, search: &[PathBuf]) -> Result<Board, String> {
        let kernel_fd = shm::memfd("kernel", KERNEL_PAGE_SIZE).map_err(|e| format!("kernel page: {e}"))?;
        let kernel = shm::map(kernel_fd.as_raw_fd(), KERNEL_PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE, None)
            .map_err(|e| format!("kernel page: {e}"))?;
        let mut regions = Vec::new();
        for r in &sys.regions {
            let rw = shm::memfd(&r.name, r.size as usize).map_err(|e| format!("region '{}': {e}", r.name))?;
            if let Some(p) = &r.prefill_path {
                let file = sdf::check::find_file(p, search).ok_or_else(|| format!("prefill '{p}' vanished"))?;
                let data = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let m = shm::map(rw.as_raw_fd(), r.size as usize, libc::PROT_WRITE, None).map_err(|e| e.to_string())?;
                // SAFETY: `data` fits (checked by check_files); fresh mapping.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), m.base, data.len()) };
            }
            let ro = shm::reopen_read_only(&rw).map_err(|e| format!("region '{}': {e}", r.name))?;
            regions.push(RegionFds { rw, ro });
        }
        let console_pd = sys.pds.iter().position(|p| p.program_image.starts_with("uart_driver"));
        let n = sys.pds.len();
        let board = Board {
            sys,
            images,
            kernel_fd,
            kernel,
            regions,
            procs: (0..n).map(|_| None).collect(),
            deaths: Arc::default(),
            console_pd,
        };
        board.kernel().format();
        Ok(board)
    }

    fn kernel(&self) -> &KernelPage {
        // SAFETY: the mapping holds a KernelPage for the board's life.
        unsafe { &*(self.kernel.base as *const KernelPage) }
    }

    fn pd_config(&self, i: usize) -> (PdConfig, Vec<(i32, i32)>) {
        let pd = &self.sys.pds[i];
        let mut fds = vec![(self.kernel_fd.as_raw_fd(), FIRST_FD)];
        let channels = sdf::topology::channels_of(&self.sys, i)
            .into_iter()
            .map(|c| ChannelCfg {
                id: c.id as u32,
                peer: c.peer,
                peer_name: c.peer_name,
                peer_id: c.peer_id as u32,
                pp: c.pp,
                peer_pp: self.sys.ends_of(c.peer).any(|(me, other)| other.pd == i && me.pp && me.id == c.peer_id),
                notify: c.notify,
            })
            .collect();
        let mut maps = Vec::new();
        for m in &pd.maps {
            let r = self.sys.regions.iter().position(|r| r.name == m.mr).expect("checked");
            let src = if m.perms.write { &self.regions[r].rw } else { &self.regions[r].ro };
            let fd = FIRST_FD + fds.len() as i32;
            fds.push((src.as_raw_fd(), fd));
            maps.push(MapCfg {
                local_name: m.local_name().to_owned(),
                mr: m.mr.clone(),
                fd,
                size: self.sys.regions[r].size as usize,
                vaddr: m.vaddr,
                perms: m.perms.to_string(),
            });
        }
        let children = self
            .sys
            .children(i)
            .map(|(index, id)| ChildCfg { id: id as u32, index, name: self.sys.pds[index].name.clone() })
            .collect();
        let cfg = PdConfig {
            name: pd.name.clone(),
            index: i,
            kernel_fd: FIRST_FD,
            kernel_size: KERNEL_PAGE_SIZE,
            channels,
            maps,
            children,
        };
        (cfg, fds)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let (cfg, fds) = self.pd_config(i);
        let mut cmd = Command::new(&self.images[i]);
        // argv[0] is the PD's name, so `ps` and /proc tell the PDs apart
        // (every slot runs the same shell binary).
        cmd.arg0(&self.sys.pds[i].name);
        cmd.env(ENV_VAR, serde_json::to_string(&cfg).expect("serialisable"));
        if Some(i) != self.console_pd {
            cmd.stdin(Stdio::null());
        }
        // SAFETY: only async-signal-safe calls (dup2, prctl) between fork
        // and exec. dup2 clears close-on-exec on the new descriptor, so the
        // child inherits exactly the descriptors its config names.
        unsafe {
            cmd.pre_exec(move || {
                for &(src, dst) in &fds {
                    if libc::dup2(src, dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting PD '{}' ({}): {e}", self.sys.pds[i].name, self.images[i].display()))?;
        let b = &self.kernel().pds[i];
        b.run_state.store(run_state::RUNNING, Ordering::Release);
        b.incarnation.fetch_add(1, Ordering::Release);
        self.procs[i] = Some(child);
        Ok(())
    }

    /// Starts every PD and supervises until a PD asks for a halt. Returns
    /// the process exit code.
    pub fn run(mut self) -> i32 {
        for i in 0..self.sys.pds.len() {
            if let Err(e) = self.spawn(i) {
                eprintln!("host-runtime: {e}");
                self.halt();
                return 1;
            }
        }
        self.start_reaper();
        loop {
            let seen = self.kernel().runtime_event.load(Ordering::SeqCst);
            let deaths: Vec<_> = self.deaths.lock().expect("reaper").drain(..).collect();
            for (pid, status) in deaths {
                if let Some(code) = self.on_death(pid, status) {
                    self.halt();
                    return code;
                }
            }
            for i in 0..self.sys.pds.len() {
                match self.kernel().pds[i].request.swap(request::NONE, Ordering::AcqRel) {
                    request::STOP => self.stop(i),
                    request::RESUME => self.resume(i),
                    request::RESTART => {
                        if let Err(e) = self.restart(i) {
                            eprintln!("host-runtime: {e}");
                        }
                    }
                    _ => {}
                }
            }
            if self.kernel().halt.load(Ordering::SeqCst) != 0 {
                return self.halt();
            }
            crate::kernel::futex_wait(&self.kernel().runtime_event, seen, Some(Duration::from_millis(200)));
        }
    }

    fn start_reaper(&self) {
        let deaths = self.deaths.clone();
        let kernel_fd = self.kernel_fd.as_raw_fd();
        std::thread::spawn(move || {
            let kernel = shm::map(kernel_fd, KERNEL_PAGE_SIZE, libc::PROT_READ | libc::PROT_WRITE, None).expect("map");
            // SAFETY: the same formatted kernel page as the board's.
            let k = unsafe { &*(kernel.base as *const KernelPage) };
            loop {
                let mut status = 0;
                // SAFETY: waitpid on our own children.
                let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
                if pid < 0 {
                    if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    return;
                }
                deaths.lock().expect("board").push_back((pid as u32, std::process::ExitStatus::from_raw(status)));
                k.wake_runtime();
            }
        });
    }

    fn pd_of_pid(&self, pid: u32) -> Option<usize> {
        self.procs.iter().position(|p| p.as_ref().is_some_and(|c| c.id() == pid))
    }

    /// A PD died on its own: report it to its parent. Returns an exit code
    /// if the system cannot go on (a PD with no parent died).
    fn on_death(&mut self, pid: u32, status: std::process::ExitStatus) -> Option<i32> {
        let i = self.pd_of_pid(pid)?;
        self.procs[i] = None;
        let (kind, code) = match (status.signal(), status.code()) {
            (Some(libc::SIGABRT), _) => (fault_kind::ABORT, libc::SIGABRT as i64),
            (Some(sig), _) => (fault_kind::SIGNAL, sig as i64),
            (None, Some(c)) => (fault_kind::EXIT, c as i64),
            (None, None) => (fault_kind::SIGNAL, -1),
        };
        if kind == fault_kind::EXIT && code == 0 && self.kernel().halt.load(Ordering::SeqCst) != 0 {
            return None; // a clean exit during halt
        }
        let name = self.sys.pds[i].name.clone();
        let b = &self.kernel().pds[i];
        b.fault_incarnation.store(b.incarnation.load(Ordering::Acquire), Ordering::Release);
        b.fault_kind.store(kind, Ordering::Release);
        b.fault_code.store(code, Ordering::Release);
        self.mark_dead(i, false);
        let fault = self.kernel().pds[i].fault();
        match self.sys.pds[i].parent {
            Some(p) => {
                eprintln!("host-runtime: PD '{name}' faulted ({fault}); reported to '{}'", self.sys.pds[p].name);
                let parent = &self.kernel().pds[p];
                parent.fault_pending.fetch_or(1 << i, Ordering::Release);
                parent.signal();
                None
            }
            None => {
                eprintln!("host-runtime: PD '{name}' faulted ({fault}) and has no parent to handle it; halting");
                Some(1)
            }
        }
    }

    /// Marks `i` dead and fails the calls waiting on it, so that no caller
    /// blocks forever on a PD that will never reply: the call it was running
    /// (FAILED) and, unless it is about to be restarted, the calls queued for
    /// it (NOT_DELIVERED). Returns the callers whose calls stay queued.
    fn mark_dead(&self, i: usize, restarting: bool) -> u64 {
        let k = self.kernel();
        k.pds[i].run_state.store(run_state::DEAD, Ordering::SeqCst);
        k.pds[i].call_pending.store(0, Ordering::Release);
        let mut queued = 0u64;
        for (c, caller) in k.pds.iter().enumerate() {
            let slot = &caller.call;
            if slot.callee.load(Ordering::Acquire) as usize != i {
                continue;
            }
            slot.complete(call_state::TAKEN, call_state::FAILED);
            if restarting {
                if slot.state.load(Ordering::Acquire) == call_state::CALLED {
                    queued |= 1 << c;
                }
            } else {
                slot.complete(call_state::CALLED, call_state::NOT_DELIVERED);
            }
        }
        queued
    }

    fn stop(&mut self, i: usize) {
        if let Some(c) = &self.procs[i] {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
            // seL4's suspend is synchronous: once it returns the thread
            // runs no more instructions. A signal is delivered later, so
            // wait (bounded) until the kernel shows the process stopped.
            await_stopped(c.id());
            self.kernel().pds[i].run_state.store(run_state::STOPPED, Ordering::Release);
        }
    }

    fn resume(&mut self, i: usize) {
        if let Some(c) = &self.procs[i] {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            self.kernel().pds[i].run_state.store(run_state::RUNNING, Ordering::Release);
        }
    }

    /// Kills `i` if it runs, waits for it, and starts it afresh.
    fn restart(&mut self, i: usize) -> Result<(), String> {
        if let Some(c) = self.procs[i].take() {
            let pid = c.id();
            // SAFETY: signalling our own child; SIGKILL also ends a stopped one.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            self.await_death(pid);
        }
        let queued = self.mark_dead(i, true);
        let b = &self.kernel().pds[i];
        b.notify_pending.store(0, Ordering::Relaxed);
        b.call.state.store(call_state::IDLE, Ordering::Relaxed);
        // A fault of the old incarnation not yet taken by the parent is
        // no longer news: the parent asked for this restart.
        if let Some(p) = self.sys.pds[i].parent {
            self.kernel().pds[p].fault_pending.fetch_and(!(1 << i), Ordering::AcqRel);
        }
        self.spawn(i)?;
        // Calls queued on the old incarnation go to the new one.
        let b = &self.kernel().pds[i];
        b.call_pending.fetch_or(queued, Ordering::Release);
        b.signal();
        Ok(())
    }

    /// Waits until the reaper reports `pid`, leaving other deaths queued.
    fn await_death(&self, pid: u32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mut q = self.deaths.lock().expect("reaper");
            if let Some(at) = q.iter().position(|(p, _)| *p == pid) {
                q.remove(at);
                return;
            }
            drop(q);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Asks every PD to exit, waits a little, then kills what is left.
    fn halt(&mut self) -> i32 {
        self.kernel().halt.store(1, Ordering::SeqCst);
        for b in &self.kernel().pds {
            b.signal();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            for p in self.procs.iter_mut() {
                if p.as_mut().is_some_and(|c| !matches!(c.try_wait(), Ok(None))) {
                    *p = None;
                }
            }
            if self.procs.iter().all(Option::is_none) || Instant::now() > deadline {
                break;
            }
            // The reaper thread may have reaped some already.
            let reaped: Vec<u32> = self.deaths.lock().expect("reaper").drain(..).map(|(p, _)| p).collect();
            for pid in reaped {
                if let Some(i) = self.pd_of_pid(pid) {
                    self.procs[i] = None;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
        }
        0
    }
}

/// Waits until process `pid` is in the stopped state ('T' in
/// /proc/PID/stat), for at most a second (a process that died is not
/// waited for).
fn await_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return };
        // The state follows the command name, which is in parentheses.
        match stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) {
            Some('T' | 't' | 'Z' | 'X') | None => return,
            _ => std::thread::sleep(Duration::from_micros(100)),
        }
    }
}
