//! The Machine reconciler's launches, made together: the I/O around
//! [`capstan_reconcile::launch_batch`].
//!
//! # Expected flow
//! Each Machine of the invocation's batch is read and decided as always; a plan that
//! would write the Machine (`Provisioning`) and launch is kept back
//! ([`DeferredLaunch`]). Once every Machine is decided, the kept launches are grouped
//! ([`capstan_reconcile::launch_batch::plan_batches`]); a launch with no identical
//! partner is performed alone, as before. For a batch: the members are sealed in uid
//! order ([`capstan_reconcile::launch_batch::seal`]) and each member's write records
//! the batch token, the member's index and its proof (conditional on the version
//! decided from, as every plan's write is). When a member's write conflicts, the
//! members recorded so far are sealed again without it and their records rewritten
//! (conditional on the version just written), until a sealing is recorded by every
//! member it names. Then one RunInstances for exactly those members; then each member
//! records its instance (the one at its AmiLaunchIndex) or the call's error,
//! conditionally again.
//!
//! # Guarantees
//! See [`capstan_reconcile::launch_batch`]: a member records its token and index
//! before the call, so whatever happens after, the next pass finds its instance by
//! the batch tag and launch index; the call asks for exactly the recorded members.
//!
//! # Errors
//! A member whose write conflicts (another invocation decided it too) is left out of
//! the batch and looked at again. After [`MAX_SEALINGS`] sealings that each lost a
//! member, the batch is not called: its recorded members are looked at again, find
//! no instance with their token, and launch after the recovery's grace. The call's error becomes every recorded member's
//! outcome ([`crate::control_plane::launch_outcome`]); `IdempotentParameterMismatch`
//! (the token was used with other parameters) is treated as "may have launched": the
//! members look for the batch's instances before launching again.

use std::time::Duration;

use capstan_model::{Machine, Object};
use capstan_reconcile::Action;
use capstan_reconcile::launch_batch::{self, Batch, Candidate};
use capstan_reconcile::machine::{LaunchOutcome, after_launch};
use tracing::{info, warn};

use crate::control_plane::{
    CONFLICT_REQUEUE, ControlPlane, DeferredLaunch, HandlerError, Interrupt, found, key_of,
    launch_outcome,
};
use crate::ports::{Bus, Compute, ComputeError, Store, StoreError, Workload};

/// How many times a batch is sealed before it gives up on a table that keeps
/// changing under it (each sealing after the first follows a lost member).
const MAX_SEALINGS: usize = 3;

/// A member whose record is written: its launch, the Machine as written and the
/// version that write left.
struct Recorded {
    launch: usize,
    machine: Machine,
    version: u64,
}
impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// Performs the launches kept back by an invocation's reconciles: identical ones
    /// in one call each, the rest alone. One result per launch, in the given order:
    /// when to look at that Machine again, or why it failed.
    pub(crate) async fn launch_together(
        &self,
        launches: Vec<DeferredLaunch>,
    ) -> Vec<Result<Option<Duration>, HandlerError>> {
        let candidates: Vec<Candidate> = launches
            .iter()
            .map(|l| Candidate {
                uid: l.machine.metadata.uid.clone().unwrap_or_default(),
                request: l.request.clone(),
            })
            .collect();
        let batches = launch_batch::plan_batches(&candidates, self.entropy.next_u128());
        let mut results: Vec<Option<Result<Option<Duration>, HandlerError>>> =
            launches.iter().map(|_| None).collect();
        for batch in &batches {
            self.launch_batch(&launches, batch, &mut results).await;
        }
        let mut out = Vec::with_capacity(launches.len());
        for (launch, result) in launches.into_iter().zip(results) {
            out.push(match result {
                Some(result) => result,
                None => self.launch_alone(launch).await,
            });
        }
        out
    }

    /// One batch: record the members, make the call, record the instances.
    async fn launch_batch(
        &self,
        launches: &[DeferredLaunch],
        batch: &Batch,
        results: &mut [Option<Result<Option<Duration>, HandlerError>>],
    ) {
        let Some((token, recorded)) = self.record_members(launches, batch, results).await else {
            return;
        };
        let Some(first) = recorded.first().map(|r| r.launch) else {
            return;
        };
        let request = launch_batch::batch_request(&launches[first].request, &token);
        let count = u32::try_from(recorded.len()).unwrap_or(u32::MAX);
        info!(batch = %token, members = count, instance_type = %request.instance_type, subnet = %request.subnet_id, step = "launch", "launching together");
        let outcomes: Vec<LaunchOutcome> = match self
            .compute
            .run_batch(request.clone(), count)
            .await
        {
            Ok(instances) => {
                let indexes: Vec<Option<u32>> = instances.iter().map(|i| i.launch_index).collect();
                launch_batch::assign(recorded.len(), &indexes)
                    .into_iter()
                    .map(|at| match at.and_then(|j| instances.get(j)) {
                        Some(instance) => LaunchOutcome::Launched(found(instance.clone())),
                        None => LaunchOutcome::Unassigned {
                            message: format!(
                                "batch {} started {} of {count} instances; launching again",
                                token,
                                instances.len()
                            ),
                        },
                    })
                    .collect()
            }
            Err(e) => {
                warn!(batch = %token, members = count, step = "launch", error = %e, "batched launch failed");
                let outcome = match e {
                    // The token was used before with other parameters: something was
                    // launched with it. Look for it before launching again.
                    ComputeError::Invalid { code, message }
                        if code == "IdempotentParameterMismatch" =>
                    {
                        LaunchOutcome::Unknown { code, message }
                    }
                    e => launch_outcome(e, &request),
                };
                recorded.iter().map(|_| outcome.clone()).collect()
            }
        };
        let now = self.clock.now();
        for (member, outcome) in recorded.into_iter().zip(outcomes) {
            let (i, machine) = (member.launch, member.machine);
            let launch = &launches[i];
            let updated = after_launch(&machine, outcome, now);
            results[i] = Some(match self.put_machine(&updated, member.version).await {
                Ok(()) => Ok(launch.requeue_after),
                // Decided again by someone else: the next pass finds the instance by
                // the batch tag and the recorded index.
                Err(StoreError::Conflict) => {
                    warn!(object = %key_of(&machine), batch = %token, "recording the batched launch conflicted; the next pass finds the instance by its batch tag");
                    Ok(Some(CONFLICT_REQUEUE))
                }
                Err(e) => Err(e.into()),
            });
        }
    }
}

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// Seals the batch's members and records each one's place, again without any
    /// member whose write lost, until every member of a sealing has recorded it: that
    /// sealing's token and its members, in launch order. None when nothing is left to
    /// call for (every member lost, or the table kept changing: [`MAX_SEALINGS`]).
    async fn record_members(
        &self,
        launches: &[DeferredLaunch],
        batch: &Batch,
        results: &mut [Option<Result<Option<Duration>, HandlerError>>],
    ) -> Option<(String, Vec<Recorded>)> {
        // Each member with the version its record is conditional on (None: the plan's
        // own first write, which carries the desired item's check too).
        let mut members: Vec<(usize, Option<u64>)> =
            batch.members.iter().map(|&i| (i, None)).collect();
        for _ in 0..MAX_SEALINGS {
            let leaves: Vec<String> = members
                .iter()
                .map(|&(i, _)| launch_batch::member_leaf(&launches[i].machine))
                .collect();
            let sealed = launch_batch::seal(&batch.salt, &leaves);
            let mut recorded: Vec<Recorded> = Vec::with_capacity(members.len());
            for (index, &(i, written)) in members.iter().enumerate() {
                let launch = &launches[i];
                let joined = launch_batch::join(&launch.machine, &batch.salt, &sealed, index);
                let outcome = match written {
                    None => self
                        .write_before_call(
                            &with_machine(&launch.actions, &joined),
                            launch.desired.clone(),
                        )
                        .await
                        .map(|()| launch.observed_rv),
                    Some(version) => self
                        .put_machine(&joined, version)
                        .await
                        .map(|()| version + 1)
                        .map_err(Interrupt::from),
                };
                match outcome {
                    Ok(version) => recorded.push(Recorded {
                        launch: i,
                        machine: joined,
                        version,
                    }),
                    Err(Interrupt::Conflict) => results[i] = Some(Ok(Some(CONFLICT_REQUEUE))),
                    Err(Interrupt::Failed(e)) => results[i] = Some(Err(e)),
                }
            }
            if recorded.len() == members.len() {
                return Some((sealed.token, recorded));
            }
            warn!(batch = %sealed.token, recorded = recorded.len(), of = members.len(), "a member's record lost; sealing the batch again without it");
            members = recorded
                .iter()
                .map(|r| (r.launch, Some(r.version)))
                .collect();
            if members.is_empty() {
                return None;
            }
        }
        // The table keeps changing: no call. The recorded members find no instance
        // with their token and launch again after the recovery's grace.
        for (i, _) in members {
            results[i] = Some(Ok(Some(CONFLICT_REQUEUE)));
        }
        None
    }
}

/// The plan's actions with the Machine replaced by `machine` (in its observed write
/// and its launch).
fn with_machine(actions: &[Action], machine: &Machine) -> Vec<Action> {
    actions
        .iter()
        .map(|a| match a {
            Action::PutObserved {
                object: Object::Machine(_),
                expect,
            } => Action::PutObserved {
                object: Object::Machine(machine.clone()),
                expect: *expect,
            },
            Action::Launch {
                request,
                observed_rv,
                recover,
                bootstrap,
                ..
            } => Action::Launch {
                machine: machine.clone(),
                request: request.clone(),
                observed_rv: *observed_rv,
                recover: *recover,
                bootstrap: bootstrap.clone(),
            },
            other => other.clone(),
        })
        .collect()
}
