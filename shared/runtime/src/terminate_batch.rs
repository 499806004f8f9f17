//! The Machine reconciler's terminations, made together: one DescribeInstances per
//! cluster and one TerminateInstances for every instance of an invocation's batch,
//! each instance still checked against its own Machine.
//!
//! # Expected flow
//! Each Machine is decided as always; a plan that (after its writes) terminates the
//! Machine's instance is kept back ([`DeferredTerminate`]). With two or more kept back:
//! each plan's writes are made (conditionally, as always); the instances of each
//! cluster are described once, by the installation, namespace and cluster tags; each
//! instance is checked against its own Machine ([`proves_ownership`]: the Machine's
//! name and uid tags, or its batch tag and launch index); the owned, live ones go in
//! one TerminateInstances (guarded by the installation tag, as one alone is); each
//! Machine records the state EC2 returns.
//!
//! # Guarantees
//! The same as one termination's: an instance is terminated only if it carries its
//! Machine's identity tags; one that does not is refused and said so on the Machine.
//!
//! # Errors
//! A failed DescribeInstances fails the cluster's Machines (their messages come back);
//! a failed TerminateInstances (one unknown id fails the whole call) falls back to one
//! call per Machine, as without batching.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::InstanceState;
use capstan_model::labels::{TAG_CLUSTER, TAG_INSTALLATION, TAG_NAMESPACE};
use capstan_reconcile::launch::proves_ownership;
use capstan_reconcile::machine::record_instance_state;
use tracing::{info, warn};

use crate::control_plane::{
    CONFLICT_REQUEUE, ControlPlane, DeferredTerminate, HandlerError, Interrupt, key_of,
};
use crate::ports::{Bus, Compute, Instance, Store, StoreError, Workload};

type Outcome = Result<Option<Duration>, HandlerError>;

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// Performs the terminations kept back by an invocation's reconciles. One result
    /// per termination, in the given order.
    pub(crate) async fn terminate_together(&self, list: Vec<DeferredTerminate>) -> Vec<Outcome> {
        if list.len() < 2 {
            let mut out = Vec::new();
            for t in list {
                out.push(
                    self.perform_alone(&t.key, t.actions, t.requeue_after, t.desired)
                        .await,
                );
            }
            return out;
        }
        let mut results: Vec<Option<Outcome>> = list.iter().map(|_| None).collect();
        // The writes before the call.
        let mut written = Vec::new();
        for (i, t) in list.iter().enumerate() {
            match self.write_before_call(&t.actions, t.desired.clone()).await {
                Ok(()) => written.push(i),
                Err(Interrupt::Conflict) => results[i] = Some(Ok(Some(CONFLICT_REQUEUE))),
                Err(Interrupt::Failed(e)) => results[i] = Some(Err(e)),
            }
        }
        // One DescribeInstances per cluster.
        let mut by_cluster: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for &i in &written {
            let m = &list[i].machine;
            by_cluster
                .entry((m.metadata.namespace.clone(), m.spec.cluster_name.clone()))
                .or_default()
                .push(i);
        }
        // (member, the instance as described) for the owned, live ones.
        let mut to_terminate: Vec<(usize, Instance)> = Vec::new();
        for ((namespace, cluster), members) in by_cluster {
            let tags = vec![
                (TAG_INSTALLATION.to_string(), self.installation.clone()),
                (TAG_NAMESPACE.to_string(), namespace),
                (TAG_CLUSTER.to_string(), cluster),
            ];
            let described = match self.compute.describe_instances(tags).await {
                Ok(instances) => instances,
                Err(e) => {
                    for &i in &members {
                        results[i] = Some(Err(e.clone().into()));
                    }
                    continue;
                }
            };
            for i in members {
                let t = &list[i];
                let owned = described.iter().find(|d| {
                    d.instance_id == t.instance_id
                        && proves_ownership(&d.tags, d.launch_index, &t.machine, &self.installation)
                });
                match owned {
                    None => {
                        results[i] = Some(
                            match self
                                .refuse_not_owned(
                                    &t.machine,
                                    &t.instance_id,
                                    "terminate",
                                    t.observed_rv,
                                )
                                .await
                            {
                                Ok(()) => Ok(t.requeue_after),
                                Err(Interrupt::Conflict) => Ok(Some(CONFLICT_REQUEUE)),
                                Err(Interrupt::Failed(e)) => Err(e),
                            },
                        );
                    }
                    Some(instance) if instance.state.is_final() => {
                        results[i] = Some(self.record(t, InstanceState::Terminated).await);
                    }
                    Some(instance) => to_terminate.push((i, instance.clone())),
                }
            }
        }
        if !to_terminate.is_empty() {
            let ids: Vec<String> = to_terminate
                .iter()
                .map(|(_, i)| i.instance_id.clone())
                .collect();
            info!(
                instances = ids.len(),
                step = "terminate",
                "terminating together"
            );
            let guard = (TAG_INSTALLATION.to_string(), self.installation.clone());
            match self.compute.terminate_instances(ids, guard).await {
                Ok(states) => {
                    for (i, _) in &to_terminate {
                        let t = &list[*i];
                        let state = states
                            .iter()
                            .find(|(id, _)| *id == t.instance_id)
                            .map_or(InstanceState::ShuttingDown, |(_, s)| *s);
                        results[*i] = Some(self.record(t, state).await);
                    }
                }
                Err(e) => {
                    // One call per Machine, as without batching (each checks again).
                    warn!(step = "terminate", error = %e, "terminating together failed; one by one");
                    for (i, _) in &to_terminate {
                        let t = &list[*i];
                        let terminate = t.actions.last().cloned().into_iter().collect();
                        results[*i] = Some(
                            self.perform_alone(&t.key, terminate, t.requeue_after, None)
                                .await,
                        );
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(Some(CONFLICT_REQUEUE))))
            .collect()
    }

    /// Records `state` on the Machine of `t`, as one termination does.
    async fn record(&self, t: &DeferredTerminate, state: InstanceState) -> Outcome {
        let Some(updated) =
            record_instance_state(&t.machine, &t.instance_id, state, self.clock.now())
        else {
            return Ok(t.requeue_after);
        };
        match self.put_machine(&updated, t.observed_rv).await {
            Ok(()) => Ok(t.requeue_after),
            Err(StoreError::Conflict) => {
                warn!(object = %key_of(&t.machine), "recording the termination conflicted; looking again");
                Ok(Some(CONFLICT_REQUEUE))
            }
            Err(e) => Err(e.into()),
        }
    }
}
