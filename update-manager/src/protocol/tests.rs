//! The update protocol driven through fake slots (see `fake_slots`): each
//! test checks the exact sequence of slot operations and the binding the
//! capability map is left with.
use super::fake_slots::{Answer, FakeSlots};
use super::{hot_rollback, make_final, probation_end_reason, SlotAt, Target, TRANSFER_NS};
use crate::history::Phase;
use alloc::{string::String, vec::Vec};
use interfaces::capmap::{Binding, Slot};
use interfaces::control::op;

const A0: SlotAt = SlotAt { inst: 0, slot: Slot::A };
const B0: SlotAt = SlotAt { inst: 0, slot: Slot::B };

fn ops(f: &FakeSlots) -> Vec<&str> {
    f.ops.iter().map(String::as_str).collect()
}

/// Where instance `i` stands: its live slot, generation, and the image in
/// each slot.
fn standing(f: &FakeSlots, i: usize) -> (Option<Slot>, u64, [Option<&'static str>; 2]) {
    let inst = &f.instances[i];
    (inst.live, inst.generation, inst.held.map(|h| h.map(|h| h.image)))
}

/// The operations that build kv-v2 into slot B, before the quiesce: the
/// old slot is asked to pre-copy (the fake modules cannot, unless a test
/// says so).
const BUILD_B0: [&str; 5] = ["0b reset", "0b load kv-v2", "0b LOAD", "0b INIT", "0a PRECOPY"];

#[test]
fn boot_is_an_update_from_nothing() {
    let f = FakeSlots::booted(&["kv0"], 0);
    let mut fresh = FakeSlots::booted(&[], 0);
    fresh.instances.push(super::Instance::new("kv0".into(), "kv".into(), 0));
    fresh.switch(&[0], Target::Image("kv-v1")).unwrap();
    assert_eq!(
        ops(&fresh),
        ["0a reset", "0a load kv-v1", "0a LOAD", "0a INIT", "commit 0 gen1 a", "0a ACTIVATE", "0a kick"],
        "nothing to quiesce or transfer, and no probation"
    );
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
    assert_eq!(f.capmap[&0], Binding { generation: 1, live: Some(Slot::A) });
}

#[test]
fn a_switch_moves_the_state_commits_the_binding_and_bumps_the_generation() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    let done = f.switch(&[0], Target::Image("kv-v2")).unwrap();
    let mut expected = Vec::from(BUILD_B0);
    expected.extend([
        "0a PREPARE s1", // v2 imports v1's schema
        "0a EXPORT",
        "0b IMPORT",
        "commit 0 gen2 b",
        "0b PROBATION", // journaling starts before B serves
        "0b open",      // B serves the next call that reaches it
        "0b ACTIVATE",
        "0b kick",
        "0a RETIRE",
    ]);
    assert_eq!(ops(&f), expected);
    assert_eq!(f.state(B0), Some(42), "the state moved to the new slot");
    assert_eq!(f.capmap[&0], Binding { generation: 2, live: Some(Slot::B) });
    assert_eq!(standing(&f, 0), (Some(Slot::B), 2, [Some("kv-v1"), Some("kv-v2")]), "v1 kept for a rollback");
    let p = f.instances[0].probation.expect("on probation");
    assert_eq!(p.old, Slot::A);
    assert!(done.times_us[Phase::Commit as usize] > 0 && done.blackout_us > 0);
    assert!(f.said.contains("transfer  ok"), "{}", f.said);
}

#[test]
fn a_failed_import_rolls_back_and_the_old_slot_stays_live() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(B0, op::IMPORT, Answer::Refuse("state schema 1: bad header"));
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!((phase, why.as_str()), (Phase::Transfer, "kv0: state schema 1: bad header"));
    let mut expected = Vec::from(BUILD_B0);
    expected.extend(["0a PREPARE s1", "0a EXPORT", "0b IMPORT", "0a THAW", "0b reset"]);
    assert_eq!(ops(&f), expected, "no commit: the old slot thaws, the new one is emptied");
    assert_eq!(f.capmap[&0], Binding { generation: 1, live: Some(Slot::A) });
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
    assert_eq!(f.state(A0), Some(42), "the old slot kept its state");
    assert!(f.instances[0].probation.is_none());
}

#[test]
fn a_new_slot_that_never_answers_is_stopped_at_its_deadline_and_rolled_back() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(B0, op::IMPORT, Answer::Silent);
    let t0 = f.now;
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!((phase, why.as_str()), (Phase::Transfer, "kv0: did not answer in time (hung): stopped"));
    assert!(f.now - t0 >= TRANSFER_NS, "waited for the transfer's deadline, no more");
    let mut expected = Vec::from(BUILD_B0);
    expected.extend(["0a PREPARE s1", "0a EXPORT", "0b IMPORT", "0b hung", "0a THAW", "0b reset"]);
    assert_eq!(ops(&f), expected);
    assert_eq!(f.capmap[&0], Binding { generation: 1, live: Some(Slot::A) });
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
    assert!(f.failed.is_empty(), "the hung slot was reset");
}

#[test]
fn an_old_slot_that_hangs_while_preparing_is_left_to_the_fault_handler() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(A0, op::PREPARE, Answer::Silent);
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!(phase, Phase::Quiesce);
    assert_eq!(why, "kv0: the live slot failed while preparing: did not answer in time (hung): stopped");
    let mut expected = Vec::from(BUILD_B0);
    expected.extend(["0a PREPARE s1", "0a hung", "0b reset"]);
    assert_eq!(ops(&f), expected, "a failed old slot is not thawed");
    assert_eq!(f.failed, [A0]);
    assert_eq!(f.capmap[&0], Binding { generation: 1, live: Some(Slot::A) });
}

#[test]
fn a_module_that_precopies_moves_its_state_early_and_only_its_changes_at_the_stop() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.precopies = true;
    let done = f.switch(&[0], Target::Image("kv-v2")).unwrap();
    let mut expected = Vec::from(BUILD_B0);
    expected.extend([
        "0b IMPORT pre-copy",           // while the old slot serves
        "0a PREPARE s1 after pre-copy", // exports the changes as it stops
        "0b IMPORT",                    // no EXPORT: they are sealed already
        "commit 0 gen2 b",
        "0b PROBATION",
        "0b open",
        "0b ACTIVATE",
        "0b kick",
        "0a RETIRE",
    ]);
    assert_eq!(ops(&f), expected);
    assert_eq!(f.state(B0), Some(42));
    assert_eq!(done.precopy_pause_us, Some(5), "the old slot's own account of its pause");
    assert_eq!(done.stop_copy_bytes, Some(8), "the new slot's account of the changes it took");
}

#[test]
fn a_refused_precopy_costs_nothing_and_the_state_travels_whole() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(A0, op::PRECOPY, Answer::Refuse("module pre-copy export failed with status -1"));
    let done = f.switch(&[0], Target::Image("kv-v2")).unwrap();
    assert!(ops(&f).contains(&"0a EXPORT") && !ops(&f).contains(&"0b IMPORT pre-copy"), "{:?}", ops(&f));
    assert!(f.said.contains("kv0: no pre-copy: module pre-copy export failed"), "{}", f.said);
    assert_eq!((f.state(B0), done.precopy_pause_us, done.stop_copy_bytes), (Some(42), None, None));
}

#[test]
fn a_failure_in_the_precopy_fails_the_build_and_the_old_slot_serves_on() {
    // The live slot faults in its pre-copy export: left to the fault
    // handler (which restarts it with its module and state), never asked
    // to prepare.
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.precopies = true;
    f.script(A0, op::PRECOPY, Answer::Fault);
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!((phase, why.as_str()), (Phase::Build, "kv0: the live slot failed in its pre-copy: faulted (abort)"));
    let mut expected = Vec::from(BUILD_B0);
    expected.push("0b reset");
    assert_eq!(ops(&f), expected);
    assert_eq!(f.failed, [A0]);
    // The new slot hangs in the pre-copy's import: stopped and reset; the
    // old slot was never stopped, so there is nothing to thaw.
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.precopies = true;
    f.script(B0, op::IMPORT, Answer::Silent);
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!(phase, Phase::Build);
    assert!(why.starts_with("kv0: the new slot failed importing the pre-copy: did not answer"), "{why}");
    assert_eq!(ops(&f)[ops(&f).len() - 3..], ["0b IMPORT pre-copy", "0b hung", "0b reset"]);
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
    assert_eq!(f.capmap[&0], Binding { generation: 1, live: Some(Slot::A) });
}

#[test]
fn a_module_that_stays_not_ready_is_given_up_at_the_timeout() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(A0, op::PREPARE, Answer::NotReady(3));
    f.switch(&[0], Target::Image("kv-v2")).expect("ready at the fourth ask");
    assert_eq!(ops(&f).iter().filter(|o| **o == "0a PREPARE s1").count(), 4);

    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.script(A0, op::PREPARE, Answer::NotReady(u32::MAX));
    let (phase, why) = f.switch(&[0], Target::Image("kv-v2")).unwrap_err();
    assert_eq!((phase, why.as_str()), (Phase::Quiesce, "kv0: prepare not ready after 10 ms"));
    assert_eq!(ops(&f)[ops(&f).len() - 2..], ["0a THAW", "0b reset"]);
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
}

#[test]
fn every_instance_of_a_service_switches_together_or_none_does() {
    let mut f = FakeSlots::booted(&["kv0", "kv1"], 7);
    f.script(SlotAt::new(1, Slot::B), op::IMPORT, Answer::Fault);
    let (phase, why) = f.switch(&[0, 1], Target::Image("kv-v2")).unwrap_err();
    assert_eq!((phase, why.as_str()), (Phase::Transfer, "kv1: faulted (abort)"));
    let tail = ["0a THAW", "1a THAW", "0b reset", "1b reset"];
    assert_eq!(ops(&f)[ops(&f).len() - 4..], tail);
    assert!(!ops(&f).iter().any(|o| o.starts_with("commit")), "no instance committed");
    for i in 0..2 {
        assert_eq!(standing(&f, i), (Some(Slot::A), 1, [Some("kv-v1"), None]));
        assert_eq!(f.state(SlotAt::new(i, Slot::A)), Some(7));
    }
}

#[test]
fn a_fault_on_probation_goes_back_to_the_old_version_with_the_journal_replayed() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    f.ops.clear();
    // B served three calls, then faulted.
    f.set_journaled(B0, 3);
    f.failed.push(B0);
    let done = hot_rollback(&mut f, "kv", Some(B0), "kv0_b abort");
    assert_eq!(
        ops(&f),
        ["0a REPLAY", "commit 0 gen3 a", "0a ACTIVATE", "0a kick", "0b restart"],
        "the faulted slot is not asked to freeze"
    );
    assert_eq!(f.state(A0), Some(45), "the old state plus the journaled calls");
    assert_eq!(f.capmap[&0], Binding { generation: 3, live: Some(Slot::A) });
    assert_eq!(standing(&f, 0), (Some(Slot::A), 3, [Some("kv-v1"), None]));
    assert!(f.instances[0].probation.is_none());
    assert_eq!(done.replayed, "kv0: 3 call(s) replayed");
    assert!(done.report.contains("runs kv-v1 (v1, schema 1) again"), "{}", done.report);
}

#[test]
fn a_fault_on_checkpoint_probation_goes_back_to_the_old_version_with_the_last_checkpoint() {
    let mut f = FakeSlots::booted(&["kv0"], 42);
    f.checkpoints = true;
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    // The checkpoint is in the schema the old version (kv-v1) imports.
    assert_eq!(f.probation_words.last().map(|w| w[1]), Some(1));
    assert!(f.instances[0].probation.is_some_and(|p| p.checkpoint));
    f.ops.clear();
    // B served three calls, checkpointing state 50, then faulted.
    f.set_checkpointed(B0, 3, 50);
    f.failed.push(B0);
    let done = hot_rollback(&mut f, "kv", Some(B0), "kv0_b abort");
    assert_eq!(ops(&f), ["0a REPLAY", "commit 0 gen3 a", "0a ACTIVATE", "0a kick", "0b restart"]);
    assert_eq!(f.state(A0), Some(50), "the new version's state, not the old one's plus anything");
    assert_eq!(done.replayed, "kv0: took over the checkpoint after 3 call(s)");
}

#[test]
fn an_operators_rollback_on_probation_freezes_the_healthy_new_slot_first() {
    let mut f = FakeSlots::booted(&["kv0"], 1);
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    f.ops.clear();
    hot_rollback(&mut f, "kv", None, "operator's rollback");
    assert_eq!(ops(&f), ["0b FREEZE", "0a REPLAY", "commit 0 gen3 a", "0a ACTIVATE", "0a kick", "0b restart"]);
}

#[test]
fn a_failed_checkpoint_ends_the_probation_and_says_why() {
    let mut f = FakeSlots::booted(&["kv0"], 1);
    f.checkpoints = true;
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    f.set_checkpointed(B0, 2, 7);
    assert_eq!(probation_end_reason(&f, 0, f.now), None);
    f.overflowed = true;
    let why = probation_end_reason(&f, 0, f.now).unwrap();
    assert!(why.starts_with("probation over: a checkpoint failed"), "{why}");
    f.checkpoints = false;
    f.switch(&[0], Target::Image("kv-v1")).unwrap();
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    assert_eq!(probation_end_reason(&f, 0, f.now), Some("probation over: the journal is full"));
}

#[test]
fn a_probation_that_runs_out_makes_the_update_final() {
    let mut f = FakeSlots::booted(&["kv0"], 1);
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    f.ops.clear();
    assert_eq!(probation_end_reason(&f, 0, f.now), None);
    f.now += f.policy.window_ms * 1_000_000;
    assert_eq!(probation_end_reason(&f, 0, f.now), Some("probation over"));
    make_final(&mut f, "kv", "probation over", true);
    assert_eq!(ops(&f), ["0b PROBATION end"]);
    assert_eq!(f.finalized, ["kv kv-v2 v2 (probation over) raise"]);
    assert!(f.instances[0].probation.is_none());
    assert_eq!(standing(&f, 0), (Some(Slot::B), 2, [Some("kv-v1"), Some("kv-v2")]));
}

#[test]
fn a_rollback_after_the_probation_switches_back_to_the_kept_module() {
    let mut f = FakeSlots::booted(&["kv0"], 5);
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    make_final(&mut f, "kv", "accepted", true);
    f.ops.clear();
    f.switch(&[0], Target::Previous).unwrap();
    assert_eq!(
        ops(&f),
        [
            "0b PRECOPY",
            "0b PREPARE s1",
            "0b EXPORT",
            "0a IMPORT",
            "commit 0 gen3 a",
            "0a open",
            "0a ACTIVATE",
            "0a kick",
            "0b RETIRE"
        ],
        "no build (the module is kept), v2 exports v1's schema, and a rollback is not on probation"
    );
    assert_eq!(f.state(A0), Some(5));
    assert_eq!(standing(&f, 0), (Some(Slot::A), 3, [Some("kv-v1"), Some("kv-v2")]));
}

#[test]
fn a_refused_image_changes_nothing() {
    let mut f = FakeSlots::booted(&["kv0"], 1);
    let refusals = [
        (Target::Image("fs-v1"), "image 'fs-v1' is service 'fs', not 'kv'"),
        (Target::Image("kv-v1"), "kv0 already runs kv-v1"),
        (Target::Image("nope"), "no image named 'nope'"),
        (Target::Previous, "kv0 has no previous version to return to"),
        (
            Target::Image("kv-v9"),
            "kv v1 keeps state in schema 1, which kv v9 cannot import, and it cannot export schema 9",
        ),
    ];
    for (target, why) in refusals {
        assert_eq!(f.switch(&[0], target).unwrap_err(), (Phase::Admit, why.into()));
    }
    assert!(f.ops.is_empty());
    assert_eq!(standing(&f, 0), (Some(Slot::A), 1, [Some("kv-v1"), None]));
}

#[test]
fn with_probation_off_or_refused_an_update_is_final_at_its_commit() {
    let mut f = FakeSlots::booted(&["kv0"], 1);
    f.policy.window_ms = 0;
    f.switch(&[0], Target::Image("kv-v2")).unwrap();
    assert!(!ops(&f).contains(&"0b PROBATION"), "no journal is asked for");
    assert!(f.instances[0].probation.is_none());

    let mut f = FakeSlots::booted(&["kv0"], 1);
    f.script(B0, op::PROBATION, Answer::Refuse("no journal region"));
    f.switch(&[0], Target::Image("kv-v2")).expect("a slot without a journal still commits");
    assert!(f.instances[0].probation.is_none());
    assert!(f.said.contains("  note: kv0: no probation: no journal region\n"), "{}", f.said);
    assert_eq!(f.capmap[&0], Binding { generation: 2, live: Some(Slot::B) });
}
