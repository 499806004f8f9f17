//! The `autoscale` workload (pods that come and go on a pool with `autoscaling
//! {min: 1, max: 5}`) holds the autoscaler's invariants (`replicas_within_bounds`,
//! `no_scale_down_in_quiet_period`, `no_needed_node_removed`), and each of them trips
//! when the autoscaler is broken on purpose.

use capstan_sim::simulator::{Faults, Mutation, Simulation};

fn assert_passes(sim: Simulation) {
    let report = sim.run();
    assert!(report.passed(), "{}", report.failure_text());
}

#[test]
fn the_autoscale_workload_converges_without_faults() {
    assert_passes(Simulation::new(1, "autoscale", Faults::none()));
}

#[test]
fn the_autoscale_workload_holds_its_invariants_under_all_faults() {
    for seed in 1..=4 {
        assert_passes(Simulation::new(seed, "autoscale", Faults::all()));
    }
}

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
