//! The console's byte path, in-process and step by step: the terminal
//! (the uart driver's reader and writer), the serial service's real module
//! (`serial-core`) and the manager, joined by the four bounded queues of
//! system.xml and by notifications, each PD's handler run to completion in
//! turn. The schedule is the one that wedged the real system: everything
//! is typed while the manager is busy, so the queues fill up and the
//! terminal has nothing more to say by the time the manager reads. Every
//! line must still be answered, and every queue drained.
mod common;

use common::{leak_region, FakePd, FakePlacer, SERIAL};
use core::ffi::c_void;
use interfaces::abi::{RegionInfo, ShellEnv, ABI_VERSION};
use interfaces::queue::{Consumer, Producer};
use interfaces::Message;
use module_rt::{Env, Module};
use pd_api::{Handler, Pd, Region};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use update_manager::Manager;

/// The serial module's channels (as its slot would number them).
const UART: u32 = 1;
const MANAGER: u32 = 2;

/// What the serial module's environment reaches.
struct PumpCtx {
    regions: Vec<(&'static str, Region)>,
    uart_told: Cell<bool>,
    manager_told: Cell<bool>,
}

unsafe fn ctx<'a>(c: *mut c_void) -> &'a PumpCtx {
    unsafe { &*(c as *const PumpCtx) }
}
unsafe fn name<'a>(p: *const u8, len: usize) -> &'a str {
    std::str::from_utf8(unsafe { std::slice::from_raw_parts(p, len) }).unwrap()
}
unsafe extern "C" fn notify(c: *mut c_void, ch: u32) {
    let c = unsafe { ctx(c) };
    match ch {
        UART => c.uart_told.set(true),
        MANAGER => c.manager_told.set(true),
        _ => panic!("notify on channel {ch}"),
    }
}
unsafe extern "C" fn ppcall(_: *mut c_void, _: u32, _: *mut Message) -> i32 {
    -1
}
unsafe extern "C" fn irq_ack(_: *mut c_void, _: u32) {}
unsafe extern "C" fn channel(_: *mut c_void, n: *const u8, len: usize) -> i32 {
    match unsafe { name(n, len) } {
        "uart" => UART as i32,
        "update_manager" => MANAGER as i32,
        _ => -1,
    }
}
unsafe extern "C" fn region(c: *mut c_void, n: *const u8, len: usize, out: *mut RegionInfo) -> i32 {
    let want = unsafe { name(n, len) };
    match unsafe { ctx(c) }.regions.iter().find(|(n, _)| *n == want) {
        Some((_, r)) => {
            unsafe { out.write(RegionInfo { base: r.base, size: r.size, writable: 1, _reserved: 0 }) };
            0
        }
        None => -1,
    }
}
unsafe extern "C" fn log(_: *mut c_void, t: *const u8, len: usize) {
    eprintln!("[serial] {}", unsafe { name(t, len) });
}
unsafe extern "C" fn abort(_: *mut c_void, t: *const u8, len: usize) -> ! {
    panic!("serial module aborted: {}", unsafe { name(t, len) })
}
unsafe extern "C" fn state_published(_: *mut c_void, _: usize) {}
unsafe extern "C" fn state_wait(_: *mut c_void, _: usize) -> i64 {
    -1
}

/// The terminal (the uart driver's reader and writer) and the serial
/// module: the PDs on the manager's side of the console's queues.
struct Peers {
    pump: serial_core::SerialPump<1>,
    ctx: &'static PumpCtx,
    /// The serial module has been notified and has not run since.
    pump_told: bool,
    input: Vec<u8>,
    typed: usize,
    rx: Producer,
    tx: Consumer,
    output: Vec<u8>,
}

impl Peers {
    /// The reader: types what fits. Like the host driver's reader thread,
    /// it pokes the serial service after every attempt while it has bytes
    /// left. Returns whether it typed anything.
    fn type_some(&mut self) -> bool {
        if self.typed == self.input.len() {
            return false;
        }
        let end = (self.typed + 256).min(self.input.len());
        let n = self.rx.push(&self.input[self.typed..end]).unwrap();
        self.typed += n;
        self.pump_told = true;
        n > 0
    }

    /// Runs whoever was told something: the serial module, then the
    /// writer (which drains the tx queue and then says there is room, as
    /// the drivers do). Returns whether anybody ran.
    fn run(&mut self, pd: &FakePd) -> bool {
        if pd.notified.borrow_mut().drain(..).any(|ch| ch == SERIAL) {
            self.pump_told = true;
        }
        let mut ran = false;
        if std::mem::take(&mut self.pump_told) {
            self.pump.notified(MANAGER);
            ran = true;
        }
        if self.ctx.uart_told.take() {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = self.tx.pop(&mut buf) {
                self.output.extend_from_slice(&buf[..n]);
                self.pump_told = true;
            }
            ran = true;
        }
        ran
    }
}

/// Runs the parts of the input through terminal, serial module and
/// manager, each typed while the manager is busy; returns what the
/// terminal printed.
fn console(parts: &[&[u8]]) -> String {
    let pd = FakePd::new(&[], &[]);
    let mut manager = Manager::new(pd, FakePlacer(pd)).expect("manager starts");
    let (uart_rx, uart_tx) = (leak_region(0x1000, true), leak_region(0x4000, true));
    let regions = vec![
        ("uart_rx", uart_rx),
        ("uart_tx", uart_tx),
        ("console_rx", pd.region("serial_rx").unwrap()),
        ("console_tx", pd.region("serial_tx").unwrap()),
    ];
    let ctx: &'static PumpCtx =
        Box::leak(Box::new(PumpCtx { regions, uart_told: Cell::new(false), manager_told: Cell::new(false) }));
    let env: &'static ShellEnv = Box::leak(Box::new(ShellEnv {
        abi_version: ABI_VERSION,
        features: 0,
        ctx: ctx as *const PumpCtx as *mut c_void,
        notify,
        ppcall,
        irq_ack,
        channel,
        region,
        log,
        abort,
        state_published,
        state_wait,
    }));
    // SAFETY: the table lives for the process.
    let pump = serial_core::SerialPump::<1>::init(unsafe { Env::from_raw(env) }.unwrap()).unwrap();
    // SAFETY: the test is the device's end of the device queues.
    let (rx, tx) = unsafe {
        (Producer::new(uart_rx.base, uart_rx.size).unwrap(), Consumer::new(uart_tx.base, uart_tx.size).unwrap())
    };
    let peers = Rc::new(RefCell::new(Peers {
        pump,
        ctx,
        pump_told: false,
        input: Vec::new(),
        typed: 0,
        rx,
        tx,
        output: Vec::new(),
    }));
    // The others run when the manager notifies them or waits for room in
    // its output queue.
    let p = peers.clone();
    *pd.others.borrow_mut() = Some(Box::new(move || {
        p.borrow_mut().run(pd);
    }));
    for part in parts {
        peers.borrow_mut().input.extend_from_slice(part);
        // The manager is busy: the terminal types all it can, the serial
        // service moves all it can.
        loop {
            let mut peers = peers.borrow_mut();
            let typed = peers.type_some();
            peers.run(pd);
            if !typed && !peers.ctx.uart_told.get() {
                break;
            }
        }
        // Then everybody runs, whoever was told something, until nobody is.
        for round in 0.. {
            assert!(round < 1_000_000, "the PDs keep waking each other up");
            let mut busy = peers.borrow_mut().type_some();
            if ctx.manager_told.take() {
                manager.notified(pd, SERIAL);
                busy = true;
            }
            busy |= peers.borrow_mut().run(pd);
            if !busy {
                break;
            }
        }
    }
    let peers = peers.borrow();
    assert_eq!(peers.typed, peers.input.len(), "the terminal typed everything");
    String::from_utf8_lossy(&peers.output).into_owned()
}

#[test]
fn an_over_long_line_typed_ahead_is_refused_and_the_next_line_answered() {
    for n in [2_500, 10_000, 100_000] {
        // The line is too long already when the manager is busy, so from
        // then on it echoes nothing.
        let out = console(&["a".repeat(200).as_bytes(), format!("{}\nversion\n", "a".repeat(n)).as_bytes()]);
        assert!(out.contains("error: line too long (at most 160 characters)"), "{n} characters:\n{out}");
        assert!(out.contains("update manager 0.1.0, module ABI v1"), "{n} characters, then version:\n{out}");
        assert!(out.ends_with("upd> "), "{n} characters: the prompt last:\n{out}");
    }
}

#[test]
fn many_lines_typed_ahead_are_all_answered() {
    let mut input = String::new();
    for k in 0..2000 {
        input.push_str(if k % 2 == 0 { "version\n" } else { "frobnicate\n" });
    }
    let out = console(&[input.as_bytes()]);
    assert_eq!(out.matches("module ABI v1, ").count(), 1000, "{out}");
    assert_eq!(out.matches("error: unknown command 'frobnicate'").count(), 1000, "{out}");
}
