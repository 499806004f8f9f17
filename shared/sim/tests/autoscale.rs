//! The `autoscale` workload's invariants (`replicas_within_bounds`,
//! `no_scale_down_in_quiet_period`, `no_needed_node_removed`) each trip when the
//! autoscaler is broken on purpose. The workload's seeds (pods that come and go on a
//! pool with `autoscaling {min: 1, max: 5}`), with and without faults, run with every
//! other workload's in `simulation.rs`.

use capstan_sim::simulator::{Faults, Mutation, Simulation};

fn trips(mutation: Mutation, invariant: &str) {
    let found = (1..=3).find_map(|seed| {
        Simulation::new(seed, "autoscale", Faults::none())
            .with_mutation(mutation)
            .run()
            .violation
            .filter(|v| v.invariant == invariant)
    });
    assert!(found.is_some(), "{mutation:?} never tripped {invariant}");
}

#[test]
fn an_autoscaler_that_overshoots_trips_replicas_within_bounds() {
    trips(Mutation::AutoscaleOvershoot, "replicas_within_bounds");
}

#[test]
fn an_autoscaler_without_its_memory_trips_no_scale_down_in_quiet_period() {
    trips(Mutation::AutoscaleForgets, "no_scale_down_in_quiet_period");
}

#[test]
fn an_autoscaler_blind_to_pods_trips_no_needed_node_removed() {
    trips(Mutation::AutoscaleBlind, "no_needed_node_removed");
}
