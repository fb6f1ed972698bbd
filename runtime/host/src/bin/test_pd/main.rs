//! A PD for the runtime's tests and benchmark. Its behaviour is chosen by
//! the prefix of its PD name; it reports with `PASS ...`/`FAIL ...` lines
//! on stderr, which the tests read.
use host_runtime::HostPd;
use interfaces::{Message, MSG_WORDS};
use pd_api::{ChannelId, ChildId, Fault, FaultAction, Handler, Pd};

mod bench;

struct Echo;

impl Handler<HostPd> for Echo {
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        pd.notify(ch);
    }
    fn protected(&mut self, _pd: &HostPd, _ch: ChannelId, msg: &mut Message) {
        msg.label += 1;
        let n = msg.count as usize;
        msg.words[..n].reverse();
    }
}

struct Caller {
    echo: ChannelId,
}

impl Handler<HostPd> for Caller {
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        if ch == self.echo {
            pd.log(format_args!("PASS notification round trip"));
        }
    }
}

struct Parent {
    faults: u32,
    restarted: bool,
}

impl Handler<HostPd> for Parent {
    /// A sleeper child says it started: the first time, stop and restart
    /// it; the second time, it is back.
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        let Some(id) = pd.peer_name(ch).and_then(|n| pd.child(n)) else { return };
        if self.restarted {
            pd.log(format_args!("PASS restarted child {id} is running again"));
            return;
        }
        self.restarted = true;
        pd.stop_child(id);
        pd.log(format_args!("PASS stopped child {id}"));
        if pd.restart_child(id) {
            pd.log(format_args!("PASS restarted child {id}"));
        }
    }
    fn fault(&mut self, pd: &HostPd, child: ChildId, fault: Fault) -> FaultAction {
        self.faults += 1;
        pd.log(format_args!("PASS fault from child {child}: {fault}"));
        // Restart a child once, then leave it stopped.
        if self.faults == 1 {
            FaultAction::Restart
        } else {
            FaultAction::Stop
        }
    }
}

struct Idle;

impl Handler<HostPd> for Idle {
    fn notified(&mut self, _pd: &HostPd, _ch: ChannelId) {}
}

fn ppc_check(pd: &HostPd, echo: ChannelId) {
    let words: Vec<u64> = (0..MSG_WORDS as u64).collect();
    let mut msg = Message::with_words(41, &words);
    match pd.ppcall(echo, &mut msg) {
        Ok(()) if msg.label == 42 && msg.used_words().iter().rev().copied().eq(0..MSG_WORDS as u64) => {
            pd.log(format_args!("PASS ppc with {} words", msg.count))
        }
        other => pd.log(format_args!("FAIL ppc: {other:?} label {}", msg.label)),
    }
}

enum Any {
    Echo(Echo),
    Caller(Caller),
    Parent(Parent),
    Idle(Idle),
}

impl Handler<HostPd> for Any {
    fn notified(&mut self, pd: &HostPd, ch: ChannelId) {
        match self {
            Any::Echo(h) => h.notified(pd, ch),
            Any::Caller(h) => h.notified(pd, ch),
            Any::Parent(h) => h.notified(pd, ch),
            Any::Idle(h) => h.notified(pd, ch),
        }
    }
    fn protected(&mut self, pd: &HostPd, ch: ChannelId, msg: &mut Message) {
        match self {
            Any::Echo(h) => h.protected(pd, ch, msg),
            _ => pd.log(format_args!("FAIL unexpected call on {ch}")),
        }
    }
    fn fault(&mut self, pd: &HostPd, child: ChildId, fault: Fault) -> FaultAction {
        match self {
            Any::Parent(h) => h.fault(pd, child, fault),
            _ => FaultAction::Stop,
        }
    }
}

fn main() {
    host_runtime::run(|pd| {
        let name = pd.name().to_owned();
        pd.log(format_args!("started pid {}", std::process::id()));
        if name.starts_with("echo") {
            Any::Echo(Echo)
        } else if name.starts_with("caller") {
            let echo = pd.channel("echo").expect("channel to echo");
            ppc_check(pd, echo);
            if pd.ppcall(pd.channel("idle").unwrap_or(63), &mut Message::default()).is_err() {
                pd.log(format_args!("PASS call without pp refused"));
            }
            pd.notify(echo);
            Any::Caller(Caller { echo })
        } else if name.starts_with("writer") {
            let r = pd.region("ro").expect("region ro");
            // SAFETY: deliberately writing a read-only mapping: the test
            // expects this PD to die of SIGSEGV.
            let first = unsafe { r.base.read_volatile() };
            pd.log(format_args!("read {first:#x} from the read-only region; now writing"));
            unsafe { r.base.write_volatile(1) };
            pd.log(format_args!("FAIL wrote a read-only region"));
            Any::Idle(Idle)
        } else if name.starts_with("crasher") {
            panic!("deliberate crash in {name}");
        } else if name.starts_with("parent") {
            Any::Parent(Parent { faults: 0, restarted: false })
        } else if name.starts_with("sleeper") {
            pd.notify(pd.channel("parent").expect("channel to parent"));
            Any::Idle(Idle)
        } else if name.starts_with("benchcaller") {
            bench::run(pd);
            pd.shutdown();
            Any::Idle(Idle)
        } else if name.starts_with("finisher") {
            std::thread::sleep(std::time::Duration::from_millis(300));
            pd.shutdown();
            Any::Idle(Idle)
        } else {
            Any::Idle(Idle)
        }
    })
}
