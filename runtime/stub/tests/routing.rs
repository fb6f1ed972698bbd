//! The stub's routing, with no processes: a fake PD whose two slots answer
//! as shells do (a live slot runs the call, any other bounces it) and a
//! capability map the test commits to as the manager would. Every request
//! must run exactly once, in a slot that was live when it ran, whatever the
//! map said when the stub last read it.
use interfaces::capmap::{Binding, CapMap, Slot, CAPMAP_SIZE};
use interfaces::control::shell_label;
use interfaces::Message;
use pd_api::{ChannelId, Pd, PpcError, Region};
use service_stub::{CallError, Stub};
use std::cell::{Cell, RefCell};

const SLOT_A: ChannelId = 1;
const SLOT_B: ChannelId = 2;

/// How a slot answers a call, as its shell would.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    /// Live: the module runs the call.
    Serve,
    /// Handed its state over, or retired: `MOVED`.
    Moved,
    /// Not live yet: `NO_SERVICE`.
    NoService,
    /// Faulted inside the call (it never reached the journal).
    Fault,
    /// Died before it took the call.
    Gone,
}

/// What the manager does when the client yields (it runs meanwhile).
type Manager = Box<dyn FnMut(&World)>;

struct World {
    capmap: Box<[u64]>,
    answers: RefCell<[Answer; 2]>,
    /// Every attempt: (slot channel, request number, whether it ran).
    calls: RefCell<Vec<(ChannelId, u64, bool)>>,
    yields: Cell<u32>,
    clock: Cell<u64>,
    on_yield: RefCell<Option<Manager>>,
}

impl World {
    fn new() -> World {
        let capmap = vec![0u64; CAPMAP_SIZE.div_ceil(8)].into_boxed_slice();
        let w = World {
            capmap,
            answers: RefCell::new([Answer::Serve, Answer::NoService]),
            calls: RefCell::new(Vec::new()),
            yields: Cell::new(0),
            clock: Cell::new(0),
            on_yield: RefCell::new(None),
        };
        // SAFETY: nobody reads the map yet.
        unsafe { w.map().format(&[("kv0", "kv")]) };
        w.commit(1, Some(Slot::A));
        w
    }

    fn map(&self) -> &CapMap {
        // SAFETY: the buffer is as large as a CapMap and 8-aligned.
        unsafe { &*(self.capmap.as_ptr() as *const CapMap) }
    }

    fn commit(&self, generation: u64, live: Option<Slot>) {
        self.map().commit(0, Binding { generation, live });
    }

    fn answer(&self, slot: Slot, a: Answer) {
        self.answers.borrow_mut()[slot.index()] = a;
    }

    /// The requests that ran, in order, with the slot each ran in.
    fn ran(&self) -> Vec<(ChannelId, u64)> {
        self.calls.borrow().iter().filter(|c| c.2).map(|c| (c.0, c.1)).collect()
    }

    fn attempts_on(&self, ch: ChannelId) -> usize {
        self.calls.borrow().iter().filter(|c| c.0 == ch).count()
    }
}

impl Pd for World {
    fn name(&self) -> &str {
        "client0"
    }
    fn notify(&self, _ch: ChannelId) {}
    fn ppcall(&self, ch: ChannelId, msg: &mut Message) -> Result<(), PpcError> {
        let slot = match ch {
            SLOT_A => 0,
            SLOT_B => 1,
            _ => return Err(PpcError::NoSuchChannel),
        };
        let request = msg.word(0);
        let answer = self.answers.borrow()[slot];
        self.calls.borrow_mut().push((ch, request, answer == Answer::Serve));
        self.clock.set(self.clock.get() + 1_000);
        match answer {
            Answer::Serve => *msg = Message::with_words(0, &[request]),
            Answer::Moved => *msg = Message::new(shell_label::MOVED, 0),
            Answer::NoService => *msg = Message::new(shell_label::NO_SERVICE, 0),
            Answer::Fault => return Err(PpcError::CalleeFaulted),
            Answer::Gone => return Err(PpcError::NotDelivered),
        }
        Ok(())
    }
    fn irq_ack(&self, _ch: ChannelId) {}
    fn channel(&self, peer: &str) -> Option<ChannelId> {
        match peer {
            "kv0_a" => Some(SLOT_A),
            "kv0_b" => Some(SLOT_B),
            _ => None,
        }
    }
    fn peer_name(&self, _ch: ChannelId) -> Option<&str> {
        None
    }
    fn region(&self, name: &str) -> Option<Region> {
        (name == "capmap").then_some(Region {
            base: self.capmap.as_ptr() as *mut u8,
            size: CAPMAP_SIZE,
            writable: false,
        })
    }
    fn log(&self, args: std::fmt::Arguments) {
        eprintln!("[client0] {args}");
    }
    fn now_ns(&self) -> u64 {
        self.clock.get()
    }
    fn shutdown(&self) {}
    fn yield_now(&self) {
        self.yields.set(self.yields.get() + 1);
        self.clock.set(self.clock.get() + 10_000);
        if let Some(manager) = self.on_yield.borrow_mut().as_mut() {
            manager(self);
        }
    }
}

/// Request `n`, sent through the stub: Ok with the slot's echo, checked.
fn request(stub: &mut Stub<'_, World>, n: u64) -> Result<(), CallError<()>> {
    let mut msg = Message::default();
    stub.call(&mut msg, |m| {
        *m = Message::with_words(7, &[n]);
        Ok(())
    })?;
    assert_eq!(msg.word(0), n, "the reply is the one to request {n}");
    Ok(())
}

#[test]
fn calls_run_in_the_live_slot_and_follow_an_update_once() {
    let w = World::new();
    let mut stub = Stub::connect(&w, "kv").expect("the instance is in the map");
    for n in 0..3 {
        request(&mut stub, n).unwrap();
    }
    // An update: a hands its state over (MOVED from now on) and the map
    // names b.
    w.answer(Slot::A, Answer::Moved);
    w.answer(Slot::B, Answer::Serve);
    w.commit(2, Some(Slot::B));
    for n in 3..6 {
        request(&mut stub, n).unwrap();
    }
    assert_eq!(w.ran(), [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4), (2, 5)], "each request once, in the live slot");
    assert_eq!(stub.retried, 1, "one bounce, then the new route");
    assert_eq!(w.attempts_on(SLOT_A), 4);
}

#[test]
fn a_bounce_before_the_commit_waits_for_the_new_binding_without_hammering_the_old_slot() {
    let w = World::new();
    let mut stub = Stub::connect(&w, "kv").unwrap();
    request(&mut stub, 0).unwrap();
    // Quiescence: a bounces, and the map still names it until the manager
    // commits, a few yields later.
    w.answer(Slot::A, Answer::Moved);
    *w.on_yield.borrow_mut() = Some(Box::new(|w: &World| {
        if w.yields.get() == 5 {
            w.answer(Slot::B, Answer::Serve);
            w.commit(2, Some(Slot::B));
        }
    }));
    request(&mut stub, 1).unwrap();
    assert_eq!(w.ran(), [(1, 0), (2, 1)]);
    assert_eq!(w.attempts_on(SLOT_A), 2, "the old slot was called once more, not again while it waited");
    assert!(w.yields.get() >= 5, "it waited for the commit");
}

#[test]
fn a_rollback_brings_the_calls_back_to_the_old_slot() {
    let w = World::new();
    let mut stub = Stub::connect(&w, "kv").unwrap();
    request(&mut stub, 0).unwrap();
    w.answer(Slot::A, Answer::Moved);
    w.answer(Slot::B, Answer::Serve);
    w.commit(2, Some(Slot::B));
    request(&mut stub, 1).unwrap();
    // On probation the new version fails inside a call: that call never
    // ran (not journaled); the manager freezes b, a replays and is live.
    w.answer(Slot::B, Answer::Fault);
    *w.on_yield.borrow_mut() = Some(Box::new(|w: &World| {
        w.answer(Slot::A, Answer::Serve);
        w.commit(3, Some(Slot::A));
    }));
    request(&mut stub, 2).unwrap();
    request(&mut stub, 3).unwrap();
    assert_eq!(w.ran(), [(1, 0), (2, 1), (1, 2), (1, 3)], "the failed call ran once, on the old version");
}

#[test]
fn a_slot_that_went_away_before_taking_the_call_is_looked_up_again() {
    let w = World::new();
    let mut stub = Stub::connect(&w, "kv").unwrap();
    request(&mut stub, 0).unwrap();
    // a is restarted (the call was never delivered) and the map names b.
    w.answer(Slot::A, Answer::Gone);
    w.answer(Slot::B, Answer::Serve);
    w.commit(2, Some(Slot::B));
    request(&mut stub, 1).unwrap();
    assert_eq!(w.ran(), [(1, 0), (2, 1)]);
    assert_eq!(stub.retried, 1);
}

#[test]
fn a_slot_that_is_not_live_yet_is_not_served_by() {
    let w = World::new();
    w.answer(Slot::A, Answer::NoService);
    w.answer(Slot::B, Answer::NoService);
    let mut stub = Stub::connect(&w, "kv").unwrap();
    *w.on_yield.borrow_mut() = Some(Box::new(|w: &World| {
        if w.yields.get() == 300 {
            w.answer(Slot::A, Answer::Serve);
        }
    }));
    request(&mut stub, 0).unwrap();
    assert_eq!(w.ran(), [(1, 0)]);
}

#[test]
fn with_no_live_slot_a_call_gives_up_after_its_deadline_and_runs_nowhere() {
    let w = World::new();
    let mut stub = Stub::connect(&w, "kv").unwrap();
    request(&mut stub, 0).unwrap();
    // The instance is held: its slot bounces and the map names no slot.
    w.answer(Slot::A, Answer::NoService);
    w.commit(2, None);
    assert_eq!(request(&mut stub, 1), Err(CallError::Unavailable));
    assert_eq!(w.ran(), [(1, 0)], "nothing ran");
    assert_eq!(w.attempts_on(SLOT_A), 2, "one attempt on the remembered route, then the map says no slot is live");
}
