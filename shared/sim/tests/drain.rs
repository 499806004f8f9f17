//! The `drain` workload's invariants (`drained_before_terminate`, `no_budget_broken`,
//! `cordon_kept`) each trip when the drain is broken on purpose. The workload's seeds,
//! with and without faults, run with every other workload's in `simulation.rs`.

use capstan_sim::simulator::{Faults, Mutation, Simulation};

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
