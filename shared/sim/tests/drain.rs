//! The `drain` workload (pods, a disruption budget that blocks for a while, a
//! scale-down and a rollout through drains) holds the drain's invariants
//! (`drained_before_terminate`, `no_budget_broken`, `cordon_kept`) with every fault on.

use capstan_sim::simulator::{Faults, Mutation, Simulation};

fn assert_passes(sim: Simulation) {
    let report = sim.run();
    assert!(report.passed(), "{}", report.failure_text());
}

#[test]
fn the_drain_workload_converges_without_faults() {
    assert_passes(Simulation::new(1, "drain", Faults::none()));
}

#[test]
fn the_drain_workload_holds_its_invariants_under_all_faults() {
    for seed in 1..=8 {
        assert_passes(Simulation::new(seed, "drain", Faults::all()));
    }
}

/// A drain that cannot see the pods lets instances go with them: the invariant trips.
#[test]
fn a_drain_blind_to_pods_trips_drained_before_terminate() {
    let found = (1..=3).find_map(|seed| {
        Simulation::new(seed, "drain", Faults::none())
            .with_mutation(Mutation::HidePods)
            .run()
            .violation
            .filter(|v| v.invariant == "drained_before_terminate")
    });
    assert!(
        found.is_some(),
        "HidePods never tripped drained_before_terminate"
    );
}
