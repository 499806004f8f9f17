//! Shared helpers for the end-to-end tests in `tests/tests/`: they drive Capstan
//! through its real entry points (the embedded control plane's API, the CLI binary).

use std::time::Duration;

use capstan_embedded::{Embedded, EmbeddedConfig, RunOutcome};
use capstan_model::{Kind, Object, ObjectKey};

/// The quickstart a newcomer applies first.
pub const QUICKSTART: &str = include_str!("../../examples/quickstart.yaml");

/// Virtual time allowed for any convergence in these tests.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(30 * 60);

pub fn quickstart() -> Vec<Object> {
    match capstan_model::manifest::read_manifests("examples/quickstart.yaml", QUICKSTART) {
        Ok(objects) => objects,
        Err(e) => panic!("the quickstart must be valid:\n{e}"),
    }
}

/// An embedded control plane on virtual time with zero boot delay.
pub fn control_plane(seed: u64, tune: impl FnOnce(&mut EmbeddedConfig)) -> Embedded {
    let mut config = EmbeddedConfig::default();
    config.ec2.boot_delay = Duration::ZERO;
    config.ec2.shutdown_delay = Duration::ZERO;
    tune(&mut config);
    Embedded::virtual_time(config, seed)
}

/// Runs until everything converged (every object Ready, every Machine Running);
/// panics with what did not, and the tree, on timeout.
pub async fn converge(cp: &mut Embedded) {
    let outcome = cp
        .run_until(
            CONVERGE_WITHIN,
            |cp| Some(cp.not_converged()).filter(|p| !p.is_empty()),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("control plane error: {e}"));
    if let RunOutcome::TimedOut(problems) = outcome {
        panic!(
            "did not converge:\n{}\n{}",
            problems.join("\n"),
            cp.describe()
        );
    }
}

/// Runs until the table is empty; panics on timeout.
pub async fn drain(cp: &mut Embedded) {
    let outcome = cp
        .run_until(
            CONVERGE_WITHIN,
            |cp| (!cp.store.is_empty()).then(|| vec![format!("{} items left", cp.store.len())]),
            |_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("control plane error: {e}"));
    if let RunOutcome::TimedOut(problems) = outcome {
        panic!(
            "table not emptied:\n{}\n{}",
            problems.join("\n"),
            cp.describe()
        );
    }
}

pub fn cluster_key() -> ObjectKey {
    ObjectKey::new("default", "demo", Kind::Cluster, "demo")
}

/// Every Machine in the table, with its stored state.
pub fn machines(cp: &Embedded) -> Vec<capstan_model::Machine> {
    cp.trees()
        .iter()
        .flat_map(|t| {
            t.of_kind(Kind::Machine)
                .filter(|s| !s.is_deleting())
                .filter_map(|s| s.object.as_machine().cloned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs until `done` holds once nothing is left to do, calling `check` after every
/// single step (not only when idle), so a bound that must hold at all times is seen
/// the moment it breaks. Panics on timeout with what did not converge.
pub async fn run_checked(
    cp: &mut Embedded,
    within: Duration,
    mut done: impl FnMut(&Embedded) -> Option<Vec<String>>,
    mut check: impl FnMut(&Embedded),
) {
    let deadline = cp.now().checked_add(within).unwrap_or(cp.now());
    loop {
        while cp
            .step()
            .await
            .unwrap_or_else(|e| panic!("control plane error: {e}"))
        {
            check(cp);
        }
        check(cp);
        let problems = match done(cp) {
            None => return,
            Some(p) => p,
        };
        if !cp.skip_to_next_wakeup(deadline) {
            panic!(
                "did not converge in {within:?}:\n{}\n{}",
                problems.join("\n"),
                cp.describe()
            );
        }
    }
}

/// Runs for `span` of virtual time, stepping until idle at each wakeup.
pub async fn run_for(cp: &mut Embedded, span: Duration) {
    let deadline = cp.now().checked_add(span).unwrap_or(cp.now());
    loop {
        while cp
            .step()
            .await
            .unwrap_or_else(|e| panic!("control plane error: {e}"))
        {}
        if !cp.skip_to_next_wakeup(deadline) {
            return;
        }
    }
}

/// The objects of a manifest, changed by `edit`.
pub fn edited(objects: &[Object], mut edit: impl FnMut(&mut Object)) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            edit(&mut o);
            o
        })
        .collect()
}

/// The live (not deleting) Machines of one worker pool of the demo cluster.
pub fn pool_machines(cp: &Embedded, pool: &str) -> Vec<capstan_model::Machine> {
    machines(cp)
        .into_iter()
        .filter(|m| {
            m.metadata
                .labels
                .get(capstan_model::labels::POOL)
                .is_some_and(|p| p == pool)
        })
        .collect()
}

/// How the demo cluster's API server is reached: EKS cluster `demo`.
pub fn access() -> capstan_model::ClusterAccess {
    capstan_model::ClusterAccess {
        eks: Some(capstan_model::EksAccess {
            cluster_name: "demo".into(),
            region: None,
        }),
        kubeconfig: None,
    }
}

/// The quickstart with access declared, `replicas` workers, and `edit` on the pool.
pub fn with_access(replicas: i32, edit: impl Fn(&mut capstan_model::WorkerPool)) -> Vec<Object> {
    edited(&quickstart(), |o| {
        if let Object::Cluster(c) = o {
            c.spec.access = Some(access());
            c.spec.workers[0].replicas = Some(replicas);
            edit(&mut c.spec.workers[0]);
        }
    })
}

/// The demo cluster's in-memory workload cluster.
pub fn cluster() -> capstan_sim::workload::ClusterKey {
    capstan_sim::workload::ClusterKey::new("default", "demo")
}
