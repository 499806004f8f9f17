//! The simulator as CI runs it: a fixed set of seeds across every workload and fault
//! mix, determinism, and proof that each invariant can trip.

use capstan_sim::simulator::sweep::{self, Outcome};
use capstan_sim::simulator::{Faults, Mutation, Simulation, WORKLOADS};

/// Seeds per workload with every fault on in the test command; CI runs the long set
/// after it (`the_long_set_holds_under_all_faults`), and `capstan sim --seeds N` as many
/// as anyone wants.
const SEEDS: std::ops::Range<u64> = 1..4;
/// The long set's seeds: together with [`SEEDS`], eight per workload.
const LONG_SEEDS: std::ops::Range<u64> = 4..9;
/// The scale storm (200 Machines) costs as much as all the others together: one seed
/// in the test command, one more in the long set.
const STORM: &str = "scale-storm";

fn assert_passes(sim: Simulation) {
    let report = sim.run();
    assert!(report.passed(), "{}", report.failure_text());
}

/// Runs on every core; fails naming every run that failed, each with its replay line.
fn assert_all_pass(runs: &[(String, u64)], faults: &Faults) {
    let outcomes = sweep::sweep(runs, faults, sweep::default_threads());
    assert_eq!(outcomes.len(), runs.len(), "every run reported");
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| o.failure.is_some()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        runs.len(),
        failures
            .iter()
            .filter_map(|o| o.failure.as_deref())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

fn all_but_the_storm() -> Vec<&'static str> {
    WORKLOADS.iter().copied().filter(|w| *w != STORM).collect()
}

#[test]
fn the_same_seed_replays_byte_for_byte() {
    let a = Simulation::new(7, "edits-in-flight", Faults::all()).run();
    let b = Simulation::new(7, "edits-in-flight", Faults::all()).run();
    assert!(a.trace.len() > 100, "a real run: {} steps", a.trace.len());
    assert!(a.faults_fired > 0, "faults fired");
    assert_eq!(a.trace, b.trace);
    let c = Simulation::new(8, "edits-in-flight", Faults::all()).run();
    assert_ne!(a.trace, c.trace, "another seed, another run");
}

#[test]
fn every_workload_converges_without_faults() {
    assert_all_pass(&sweep::runs(WORKLOADS, 1..2), &Faults::none());
}

#[test]
fn every_workload_holds_its_invariants_under_all_faults() {
    let mut runs = sweep::runs(&all_but_the_storm(), SEEDS);
    runs.extend(sweep::runs(&[STORM], 1..2));
    assert_all_pass(&runs, &Faults::all());
}

/// The long set: CI runs it after the test command (`.ci/run`), with `--ignored`.
#[test]
#[ignore = "the long set: CI runs it after the test command"]
fn the_long_set_holds_under_all_faults() {
    let mut runs = sweep::runs(&all_but_the_storm(), LONG_SEEDS);
    runs.extend(sweep::runs(&[STORM], 2..3));
    assert_all_pass(&runs, &Faults::all());
}

#[test]
fn each_fault_alone_is_survived() {
    for fault in capstan_sim::simulator::FAULT_NAMES {
        let faults = Faults::parse(fault).expect("known fault");
        for seed in 100..103 {
            assert_passes(Simulation::new(seed, "edits-in-flight", faults.clone()));
        }
    }
}

/// Each invariant, shown to trip when a handler's calls are deliberately broken.
#[test]
fn a_broken_handler_trips_each_invariant() {
    for (mutation, workload, invariant) in [
        (
            Mutation::DoubleLaunch,
            "quickstart",
            "at_most_one_live_instance_per_machine",
        ),
        (
            Mutation::SkipTerminate,
            "rollout-during-scale-down",
            "every_live_tagged_instance_has_a_machine",
        ),
        (
            Mutation::IgnoreTagGuard,
            "quickstart",
            "foreign_instances_untouched",
        ),
        (
            Mutation::UnconditionalWrites,
            "edits-in-flight",
            "no_write_against_a_stale_version",
        ),
        (
            Mutation::DropOwnerFinalizer,
            "delete-during-rollout",
            "every_child_has_its_owner",
        ),
        (
            Mutation::LoseMachineStatus,
            "quickstart",
            "converges_once_faults_stop",
        ),
        (
            Mutation::DrainOldSets,
            "rollout-during-scale-down",
            "rollouts_within_max_unavailable",
        ),
        (
            Mutation::IgnoreRemediationLimits,
            "quickstart",
            "health_checks_within_limits",
        ),
        (
            Mutation::OvershootSurge,
            "rollout-during-scale-down",
            "rollouts_within_max_surge",
        ),
        (
            Mutation::SuffixedSetNames,
            "quickstart",
            "one_machine_set_per_template_hash",
        ),
    ] {
        let faults = match mutation {
            Mutation::IgnoreTagGuard => Faults::parse("foreign").expect("faults"),
            Mutation::UnconditionalWrites => Faults::parse("conflict").expect("faults"),
            // Workers failing from outside, often enough that several are unhealthy at once.
            Mutation::IgnoreRemediationLimits => Faults::parse("external=0.05").expect("faults"),
            _ => Faults::none(),
        };
        let found = (1..=5).find_map(|seed| {
            let report = Simulation::new(seed, workload, faults.clone())
                .with_mutation(mutation)
                .run();
            report.violation.filter(|v| v.invariant == invariant)
        });
        assert!(
            found.is_some(),
            "{mutation:?} on {workload} never tripped {invariant}"
        );
    }
}

/// Bugs the simulator found, each kept with the seed and faults that found it.
#[test]
fn regression_a_launch_whose_outcome_is_unknown_is_never_repeated_blind() {
    // Found by seed 6 (rollout-during-scale-down, faults timeout,no-idempotency): a
    // RunInstances that took effect but timed out was treated as "nothing launched",
    // so the next pass launched again; where the ClientToken is not honoured (moto, or
    // past its window) that made a second instance. Fixed: an unknown outcome keeps the
    // launch recorded as requested, and the next pass finds the instance by tag first.
    assert_passes(Simulation::new(
        6,
        "rollout-during-scale-down",
        Faults::parse("timeout,no-idempotency").expect("faults"),
    ));
    // Found by seed 2 (same workload, faults timeout,no-idempotency,stale) once the first
    // was fixed: the wait for DescribeInstances to show a launch counted from the first
    // request, not the latest, so a just-launched instance was not found yet. Fixed: the
    // grace counts from the latest call.
    assert_passes(Simulation::new(
        2,
        "rollout-during-scale-down",
        Faults::parse("timeout,no-idempotency,stale").expect("faults"),
    ));
}

/// `--faults` takes names, `name=rate`, `all` and `none`, and says what is wrong otherwise.
#[test]
fn fault_lists_parse_with_rates_and_refuse_nonsense() {
    let f = Faults::parse("all,spot=0.5,foreign=4").expect("faults");
    assert_eq!(f.spot, 0.5);
    assert_eq!(
        f.concurrency, 5,
        "all runs the template's MaximumConcurrency"
    );
    assert_eq!(
        Faults::parse("concurrency=2").expect("faults").concurrency,
        2
    );
    assert_eq!(f.foreign_instances, 4);
    assert_eq!(f.drop, Faults::all().drop);
    for (bad, says) in [
        ("spot=2", "probability from 0 to 1"),
        ("drop=NaN", "probability from 0 to 1"),
        ("stale=0.1", "takes no rate"),
        ("foreign=-1", "number of instances"),
        ("concurrency=0", "invocations at once"),
        ("earthquake", "unknown fault"),
    ] {
        let err = Faults::parse(bad).expect_err(bad);
        assert!(err.contains(says), "{bad}: {err}");
    }
}

/// Lambda's concurrency, with the fence removed: two invocations of the machineset
/// reconciler decide from the same read (or a MachineSet from replicas a concurrent
/// deployment pass has just lowered) and both act. With the fence (every other test
/// here), the same seeds pass.
#[test]
fn without_the_fence_concurrent_invocations_overshoot_a_machine_set() {
    let faults = Faults::parse("concurrency,external=0.1").expect("faults");
    let found = (1..=4).find_map(|seed| {
        let report = Simulation::new(seed, "rollout-during-scale-down", faults.clone())
            .with_mutation(Mutation::Unfenced)
            .run();
        report
            .violation
            .filter(|v| v.invariant == "machine_sets_within_replicas")
    });
    assert!(
        found.is_some(),
        "unfenced plans under concurrency never tripped machine_sets_within_replicas"
    );
    // Seed 3's faults stop every worker from outside: a health check's maxUnhealthy
    // short-circuit then leaves them to a person, as in Cluster API. Seed 2 (with
    // batched launches) has a Machine of the new set terminated from outside while the
    // deployment, reading the set's availability from before, rightly shrinks the old
    // set: `rollouts_within_max_unavailable` judges a shrink by the availability
    // reported before the step or after it, as the deployment may have read either.
    for seed in [1, 2, 4] {
        assert_passes(Simulation::new(
            seed,
            "rollout-during-scale-down",
            faults.clone(),
        ));
    }
}

/// Lambda's concurrency with the machine reconciler's fence removed: two invocations
/// handed the same Machine (a duplicated event) both read it before either writes
/// Provisioning, and both call RunInstances. With the fence, the same seeds pass.
/// Most events duplicated (0.9): the race needs a duplicate to reach two invocations of
/// one step; at 0.5 it came up in 3 of 30 seeds, at 0.9 in 12 (the first, seed 5).
#[test]
fn without_the_fence_two_passes_launch_for_one_machine() {
    let faults = Faults::parse("concurrency,duplicate=0.9").expect("faults");
    let found = (1..=10).find_map(|seed| {
        let report = Simulation::new(seed, "quickstart", faults.clone())
            .with_mutation(Mutation::UnfencedMachines)
            .run();
        report
            .violation
            .filter(|v| v.invariant == "one_launch_per_decision")
    });
    assert!(
        found.is_some(),
        "unfenced machine plans under concurrency never tripped one_launch_per_decision"
    );
    for seed in 1..=5 {
        assert_passes(Simulation::new(seed, "quickstart", faults.clone()));
    }
}

/// The hostile writer's forged items (another namespace's copy of a Machine's observed
/// item, keeping its instance id and uid) cost nothing only because every call on an
/// existing instance is scoped to the acting Machine's identity tags. With the check
/// matching the installation and the uid alone (`TrustForgedItems`), a forged item
/// passes for the instance's owner and gets it terminated; with the check whole, the
/// same seed passes. Seed 6 of the quickstart under the hostile fault at its `all` rate.
#[test]
fn trusting_a_forged_item_trips_hostile_writes_cost_nothing() {
    let faults = Faults::parse("hostile").expect("faults");
    let broken = Simulation::new(6, "quickstart", faults.clone())
        .with_mutation(Mutation::TrustForgedItems)
        .run();
    let violation = broken.violation.expect("the forged item cost an instance");
    assert_eq!(
        violation.invariant, "hostile_writes_cost_nothing",
        "{}",
        violation.message
    );
    assert!(
        violation
            .message
            .contains("terminated after a hostile write named it"),
        "{}",
        violation.message
    );
    assert_passes(Simulation::new(6, "quickstart", faults));
}
