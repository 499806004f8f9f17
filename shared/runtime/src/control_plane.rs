//! The driver around the pure decisions: read a snapshot, decide, act, and on a
//! conflict read and decide again. One `ControlPlane` value serves every handler; the
//! Lambda functions, the embedded runtime and the simulator all build one.

use std::sync::Arc;
use std::time::Duration;

use capstan_model::hash::spec_hash;
use capstan_model::item::{
    AttrValue, ItemKey, Part, RV, encode_desired, encode_observed, item_key, item_size,
    kind_prefix, object_prefix, partition_key, set_machines_prefix,
};
use capstan_model::labels::TAG_INSTALLATION;
use capstan_model::{Expect, InstanceState, Kind, Machine, Object, ObjectKey};
use capstan_reconcile::launch::{Offering, ownership_tags, owns_launch_index};
use capstan_reconcile::machine::{self as machine_decisions, FoundInstance, LaunchOutcome};
use capstan_reconcile::plan::version_after;
use capstan_reconcile::{Action, Ctx, Plan, Tree};
use thiserror::Error;
use tracing::{debug, info, warn};

pub use crate::node::NoWorkload;
use crate::ports::{
    Bus, BusError, Clock, Compute, ComputeError, Entropy, Instance, MAX_TRANSACT_WRITES, Store,
    StoreError, Workload, Write,
};

/// How many times one reconcile re-reads after a conflict before giving up for now.
pub const CONFLICT_RETRIES: usize = 5;
/// The most one transaction of a plan carries, well under DynamoDB's 4 MB.
pub const TRANSACTION_BYTES: usize = 3 * 1024 * 1024;
/// When a reconcile gave up on conflicts, how soon to look again.
pub const CONFLICT_REQUEUE: Duration = Duration::from_secs(1);

/// Why a handler could not finish. Retryable errors leave the message on its queue.
#[derive(Debug, Error)]
pub enum HandlerError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("EC2: {0}")]
    Compute(#[from] ComputeError),
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The event cannot be understood; it goes to the dead-letter queue.
    #[error("malformed event: {0}")]
    Malformed(String),
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HandlerError::Store(e) => e.is_retryable(),
            HandlerError::Compute(e) => e.is_retryable(),
            HandlerError::Bus(_) => true,
            HandlerError::Malformed(_) => false,
        }
    }
}

/// A conflict stops a plan half-way; anything else is an error.
pub(crate) enum Interrupt {
    Conflict,
    Failed(HandlerError),
}

impl From<StoreError> for Interrupt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Interrupt::Conflict,
            other => Interrupt::Failed(other.into()),
        }
    }
}

impl From<ComputeError> for Interrupt {
    fn from(e: ComputeError) -> Self {
        Interrupt::Failed(e.into())
    }
}

/// Every handler's dependencies: the ports and the installation name.
pub struct ControlPlane<S, C, B, W = NoWorkload> {
    pub store: S,
    pub compute: C,
    pub bus: B,
    /// The workload clusters' API servers, for Clusters that declare `spec.access`.
    pub workload: W,
    pub clock: Arc<dyn Clock>,
    pub entropy: Arc<dyn Entropy>,
    /// Tags every instance; only instances carrying it are ever terminated.
    pub installation: String,
    /// Identical launches of one Machine-reconciler batch share one RunInstances
    /// ([`capstan_reconcile::launch_batch`]); off, every Machine makes its own call
    /// (the pattern before issue 16, kept for the benchmark).
    pub batch_launches: bool,
}

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// Reads what deciding about `key` needs, each item read consistently: a Machine's
    /// own two items and its Cluster's; a MachineSet's own, its Cluster's, the
    /// partition's classes and deployments, and its Machines (by their name prefix,
    /// [`set_machines_prefix`]) — what it reads grows with its own replicas, not with
    /// the cluster; for every other kind, the cluster's whole partition (one Query).
    /// Several Queries are no less consistent than one: a Query is not a snapshot
    /// either, and every write is fenced on the versions the decision read.
    pub async fn snapshot(&self, key: &ObjectKey) -> Result<Tree, StoreError> {
        let pk = partition_key(&key.namespace, &key.cluster);
        let prefixes = match key.kind {
            Kind::Machine => vec![
                object_prefix(Kind::Machine, &key.name),
                object_prefix(Kind::Cluster, &key.cluster),
            ],
            Kind::MachineSet => vec![
                object_prefix(Kind::MachineSet, &key.name),
                object_prefix(Kind::Cluster, &key.cluster),
                kind_prefix(Kind::MachineClass),
                kind_prefix(Kind::MachineDeployment),
                set_machines_prefix(&key.name),
            ],
            _ => return Ok(Tree::from_items(&self.store.query(&pk, None).await?)),
        };
        let mut items = Vec::new();
        for prefix in &prefixes {
            items.extend(self.store.query(&pk, Some(prefix)).await?);
        }
        if key.kind == Kind::Machine
            && let Some(class) = referenced_class(&items)
        {
            // The class its launchRef resolves against (capstan_reconcile::launch).
            items.extend(
                self.store
                    .query(&pk, Some(&object_prefix(Kind::MachineClass, &class)))
                    .await?,
            );
        }
        Ok(Tree::from_items(&items))
    }

    /// Reconciles one object: read, decide, act; on a conflict, read and decide again.
    /// Returns when to look again.
    pub async fn reconcile(&self, key: &ObjectKey) -> Result<Option<Duration>, HandlerError> {
        match self.reconcile_or_defer(key, false).await? {
            Reconciled::Done(after) => Ok(after),
            Reconciled::Launch(launch) => self.launch_alone(launch).await,
            Reconciled::Terminate(t) => {
                self.perform_alone(&t.key, t.actions, t.requeue_after, t.desired)
                    .await
            }
        }
    }

    /// [`Self::reconcile`], except that with `defer` a plan that only writes the
    /// Machine and then launches its instance is handed back unperformed, for the
    /// Machine reconciler to launch together with the other launches of its batch
    /// ([`crate::launch_batch`]).
    pub(crate) async fn reconcile_or_defer(
        &self,
        key: &ObjectKey,
        defer: bool,
    ) -> Result<Reconciled, HandlerError> {
        for attempt in 0..CONFLICT_RETRIES {
            let tree = self.snapshot(key).await?;
            let ctx = Ctx {
                now: self.clock.now(),
                entropy: self.entropy.next_u128(),
                installation: self.installation.clone(),
            };
            if let Some(unreadable) = tree.unreadable(key.kind, &key.name) {
                // Present but unreadable: left alone (no launch, delete or terminate)
                // until it can be read; its owner reports it too.
                warn!(object = %key, step = "read", problem = %unreadable.describe(), "cannot read the object's observed item; leaving it alone");
                return Ok(Reconciled::Done(None));
            }
            let plan = capstan_reconcile::decide(key, &tree, &ctx);
            if !plan.actions.is_empty() {
                debug!(object = %key, step = "decide", actions = plan.actions.len(), "decided");
            }
            // The decision read the desired item too (a MachineSet's replicas, a
            // deployment's template): a plan that acts is fenced on its version as well.
            let desired = tree
                .get(key.kind, &key.name)
                .and_then(|s| s.desired_rv)
                .map(|rv| Write::Check {
                    key: ItemKey::of(key, Part::Desired),
                    expect: Expect::Version(rv),
                });
            if defer && let Some(launch) = DeferredLaunch::of(key, &plan, desired.clone()) {
                return Ok(Reconciled::Launch(launch));
            }
            if defer && let Some(t) = DeferredTerminate::of(key, &plan, desired.clone()) {
                return Ok(Reconciled::Terminate(t));
            }
            match self.execute(&plan, desired).await {
                Ok(()) => return Ok(Reconciled::Done(plan.requeue_after)),
                Err(Interrupt::Conflict) => {
                    debug!(object = %key, step = "act", attempt, "conflict; reading again");
                }
                Err(Interrupt::Failed(e)) => return Err(e),
            }
        }
        Ok(Reconciled::Done(Some(CONFLICT_REQUEUE)))
    }

    /// Performs a deferred launch on its own, as [`Self::reconcile`] would have; on a
    /// conflict, reads and decides again (without deferring).
    pub(crate) async fn launch_alone(
        &self,
        launch: DeferredLaunch,
    ) -> Result<Option<Duration>, HandlerError> {
        self.perform_alone(
            &launch.key,
            launch.actions,
            launch.requeue_after,
            launch.desired,
        )
        .await
    }

    /// Performs a deferred plan's `actions` as [`Self::reconcile`] would have; on a
    /// conflict, reads and decides again (without deferring).
    pub(crate) async fn perform_alone(
        &self,
        key: &ObjectKey,
        actions: Vec<Action>,
        requeue_after: Option<Duration>,
        desired: Option<Write>,
    ) -> Result<Option<Duration>, HandlerError> {
        let plan = Plan {
            actions,
            requeue_after,
        };
        match self.execute(&plan, desired).await {
            Ok(()) => Ok(plan.requeue_after),
            Err(Interrupt::Conflict) => match self.reconcile_or_defer(key, false).await? {
                Reconciled::Done(after) => Ok(after),
                // Not deferring: every plan was performed.
                Reconciled::Launch(_) | Reconciled::Terminate(_) => Ok(Some(CONFLICT_REQUEUE)),
            },
            Err(Interrupt::Failed(e)) => Err(e),
        }
    }

    /// Performs a plan: its writes first, fenced, then at most one EC2 call.
    ///
    /// The writes (the object's own observed item first, then its children's items) go
    /// in one transaction, so a concurrent invocation that decided from the same read
    /// fails as a whole on the observed item's version and decides again (see
    /// `capstan_reconcile::lifecycle::needs_fence`). A plan with more writes than one
    /// transaction holds is performed in several, each fenced again on the version
    /// the previous one wrote, so no other pass can act in between.
    async fn execute(&self, plan: &Plan, desired: Option<Write>) -> Result<(), Interrupt> {
        let writes: Vec<Write> = plan.actions.iter().map_while(write_of).collect();
        let calls = &plan.actions[writes.len()..];
        // Fenced: the plan starts with its observed item and does more than that.
        let fenced =
            writes.first().is_some_and(is_observed_put) && (writes.len() > 1 || !calls.is_empty());
        let desired =
            desired.filter(|check| fenced && !writes.iter().any(|w| w.key() == check.key()));
        self.write_fenced(writes, desired).await?;
        for action in calls {
            match action {
                Action::PutDesired { .. }
                | Action::DeleteDesired { .. }
                | Action::PutObserved { .. }
                | Action::DeleteObserved { .. } => {
                    // A decision orders its writes before its EC2 call; a write after
                    // the call would be unfenced.
                    return Err(Interrupt::Failed(HandlerError::Malformed(
                        "a plan wrote after its EC2 call".to_string(),
                    )));
                }
                Action::Launch {
                    machine,
                    request,
                    observed_rv,
                    recover,
                    bootstrap,
                } => {
                    let found = if *recover {
                        self.find_instance(machine).await?
                    } else {
                        None
                    };
                    let outcome = match found {
                        Some(found) => {
                            info!(object = %key_of(machine), step = "launch", instance = %found.instance_id, "found the instance of an unrecorded launch");
                            LaunchOutcome::Launched(found)
                        }
                        None => match self.bootstrap_user_data(machine, bootstrap.as_ref()).await {
                            Ok(user_data) => {
                                let mut request = request.clone();
                                if user_data.is_some() {
                                    request.user_data = user_data;
                                }
                                self.launch(machine, request).await
                            }
                            Err(not_launched) => not_launched,
                        },
                    };
                    let updated =
                        machine_decisions::after_launch(machine, outcome, self.clock.now());
                    self.put_machine(&updated, *observed_rv).await?;
                }
                Action::Terminate {
                    machine,
                    instance_id,
                    observed_rv,
                } => {
                    // Only an instance that carries this Machine's tags, not merely the
                    // installation's: an item naming another Machine's instance (another
                    // namespace's, say) must not get it terminated.
                    let Some(owned) = self.owned_instance(machine, instance_id).await? else {
                        self.refuse_not_owned(machine, instance_id, "terminate", *observed_rv)
                            .await?;
                        continue;
                    };
                    let state = if owned.state.is_final() {
                        InstanceState::Terminated
                    } else {
                        info!(object = %key_of(machine), step = "terminate", instance = %instance_id, "terminating");
                        let guard = (TAG_INSTALLATION.to_string(), self.installation.clone());
                        match self
                            .compute
                            .terminate_instances(vec![instance_id.clone()], guard)
                            .await
                        {
                            Ok(states) => states
                                .into_iter()
                                .find(|(id, _)| id == instance_id)
                                .map_or(InstanceState::ShuttingDown, |(_, s)| s),
                            // Gone from EC2 altogether: as terminated as it gets.
                            Err(ComputeError::Invalid { code, .. })
                                if code == "InvalidInstanceID.NotFound" =>
                            {
                                InstanceState::Terminated
                            }
                            Err(e) => return Err(e.into()),
                        }
                    };
                    if let Some(updated) = machine_decisions::record_instance_state(
                        machine,
                        instance_id,
                        state,
                        self.clock.now(),
                    ) {
                        self.put_machine(&updated, *observed_rv).await?;
                    }
                }
                Action::TagInstance {
                    machine,
                    instance_id,
                    tags,
                    observed_rv,
                } => {
                    if self.owned_instance(machine, instance_id).await?.is_none() {
                        self.refuse_not_owned(machine, instance_id, "tag", *observed_rv)
                            .await?;
                        continue;
                    }
                    info!(object = %key_of(machine), step = "tag", instance = %instance_id, "tagging in place");
                    let guard = (TAG_INSTALLATION.to_string(), self.installation.clone());
                    match self
                        .compute
                        .create_tags(vec![instance_id.clone()], tags.clone(), guard)
                        .await
                    {
                        Ok(()) => {
                            let updated = machine_decisions::after_tagging(machine);
                            self.put_machine(&updated, *observed_rv).await?;
                        }
                        // The instance is gone: its state change will say so; nothing to tag.
                        Err(ComputeError::Invalid { code, .. })
                            if code == "InvalidInstanceID.NotFound" => {}
                        // Refused (not ours, not supported): retrying will not help, and
                        // tags are not worth failing the Machine's reconcile over.
                        Err(e) if !e.is_retryable() => {
                            warn!(object = %key_of(machine), step = "tag", instance = %instance_id, error = %e, "tagging refused");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Action::ObserveNode {
                    machine,
                    instance_id,
                    access,
                    observed_rv,
                } => {
                    let (seen, labelled) =
                        crate::node::observe(&self.workload, machine, instance_id, access).await;
                    if let Some(updated) = capstan_reconcile::node::record_node(
                        machine,
                        seen,
                        labelled,
                        self.clock.now(),
                    ) {
                        self.put_machine(&updated, *observed_rv).await?;
                    }
                }
                Action::DeleteNode {
                    machine,
                    node,
                    instance_id,
                    access,
                    observed_rv,
                } => match crate::node::delete(
                    &self.workload,
                    machine,
                    node.as_deref(),
                    instance_id,
                    access,
                )
                .await
                {
                    Ok(()) => {
                        info!(object = %key_of(machine), step = "delete-node", node = ?node, instance = %instance_id, "node deleted");
                        let updated =
                            capstan_reconcile::node::record_node_deleted(machine, self.clock.now());
                        self.put_machine(&updated, *observed_rv).await?;
                    }
                    // Bounded by the node deletion timeout: the decision lets go after it.
                    Err(e) => {
                        warn!(object = %key_of(machine), step = "delete-node", node = ?node, error = %e, "deleting the node failed; trying again");
                    }
                },
                Action::DrainNode {
                    machine,
                    instance_id,
                    access,
                    cluster_deleting,
                    observed_rv,
                } => {
                    let now = self.clock.now();
                    if let Some(updated) = crate::drain::pass(
                        &self.workload,
                        machine,
                        instance_id,
                        access,
                        *cluster_deleting,
                        now,
                    )
                    .await
                    {
                        self.put_machine(&updated, *observed_rv).await?;
                    }
                }
                Action::FindInstance {
                    machine,
                    observed_rv,
                } => {
                    let found = self.find_instance(machine).await?;
                    let updated = machine_decisions::record_found(machine, found, self.clock.now());
                    if &updated != machine {
                        self.put_machine(&updated, *observed_rv).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The writes of a plan (its leading table-write actions), fenced as
    /// [`Self::execute`] fences them when an EC2 call follows.
    pub(crate) async fn write_before_call(
        &self,
        actions: &[Action],
        desired: Option<Write>,
    ) -> Result<(), Interrupt> {
        let writes: Vec<Write> = actions.iter().map_while(write_of).collect();
        let fenced = writes.first().is_some_and(is_observed_put);
        let desired =
            desired.filter(|check| fenced && !writes.iter().any(|w| w.key() == check.key()));
        self.write_fenced(writes, desired).await
    }

    /// The plan's writes, in transactions of at most [`MAX_TRANSACT_WRITES`] writes and
    /// [`TRANSACTION_BYTES`]; every transaction after the first starts with the object's
    /// observed item again, conditional on the version the previous one wrote.
    ///
    /// `desired` (a check that the object's desired item is still the version the
    /// decision read) joins every transaction.
    async fn write_fenced(
        &self,
        writes: Vec<Write>,
        desired: Option<Write>,
    ) -> Result<(), Interrupt> {
        let Some(first) = writes.first() else {
            return Ok(());
        };
        // The object's own observed item, when the plan starts by writing it.
        let fence = match first {
            Write::Put { item, expect } if is_observed_put(first) => Some((item.clone(), *expect)),
            _ => None,
        };
        let start = |batch: &mut Vec<Write>, keys: &mut std::collections::BTreeSet<ItemKey>| {
            if let Some(check) = &desired {
                keys.extend(check.key());
                batch.push(check.clone());
            }
        };
        let mut batch: Vec<Write> = Vec::new();
        let mut bytes = 0;
        let mut keys = std::collections::BTreeSet::new();
        start(&mut batch, &mut keys);
        let mut version = fence.as_ref().map(|(_, expect)| version_after(*expect));
        for write in writes {
            let size = match &write {
                Write::Put { item, .. } => item_size(item),
                Write::Delete { .. } | Write::Check { .. } => 0,
            };
            let repeats = write.key().is_some_and(|k| keys.contains(&k));
            if batch.len() > usize::from(desired.is_some())
                && (batch.len() >= MAX_TRANSACT_WRITES
                    || bytes + size > TRANSACTION_BYTES
                    || repeats)
            {
                self.store.transact(std::mem::take(&mut batch)).await?;
                bytes = 0;
                keys.clear();
                start(&mut batch, &mut keys);
                // Fence the next transaction on the version this one wrote.
                if let (Some((observed, _)), Some(v)) = (&fence, version) {
                    let mut refence = observed.clone();
                    refence.insert(RV.to_string(), AttrValue::N((v + 1).to_string()));
                    bytes += item_size(&refence);
                    keys.extend(item_key(&refence));
                    batch.push(Write::Put {
                        item: refence,
                        expect: Expect::Version(v),
                    });
                    version = Some(v + 1);
                }
            }
            bytes += size;
            keys.extend(write.key());
            batch.push(write);
        }
        self.store.transact(batch).await?;
        Ok(())
    }

    async fn put_observed(&self, object: &Object, expect: Expect) -> Result<(), StoreError> {
        let hash = spec_hash(&object.spec_json());
        self.store
            .put(
                encode_observed(object, &hash, version_after(expect)),
                expect,
            )
            .await
    }

    pub(crate) async fn put_machine(
        &self,
        machine: &Machine,
        observed_rv: u64,
    ) -> Result<(), StoreError> {
        self.put_observed(
            &Object::Machine(machine.clone()),
            Expect::Version(observed_rv),
        )
        .await
    }

    /// The user data of a launch whose spec has `bootstrap.eks`, rendered from what
    /// DescribeCluster says of the cluster `access` names
    /// ([`capstan_reconcile::machine_user_data`]); None without bootstrap. An error is
    /// the launch's outcome: nothing was launched. Reading the cluster is retried with
    /// the launch's backoff (a cluster still being created, throttling, an access
    /// entry not yet in place); a spec the user data cannot be written from fails the
    /// Machine, saying why.
    async fn bootstrap_user_data(
        &self,
        machine: &Machine,
        access: Option<&capstan_model::ClusterAccess>,
    ) -> Result<Option<String>, LaunchOutcome> {
        let Some(access) = access else {
            return Ok(None);
        };
        let (Some(target), Some(eks)) = (crate::node::target_of(machine, access), &access.eks)
        else {
            return Err(LaunchOutcome::Retryable {
                code: "BootstrapNeedsAccess".into(),
                message: "bootstrap.eks needs the Cluster's spec.access.eks".into(),
            });
        };
        let cluster = match self.workload.eks_cluster(&target).await {
            Ok(cluster) => cluster,
            Err(e) => {
                warn!(object = %key_of(machine), step = "bootstrap", error = %e, "reading the EKS cluster for the node's bootstrap failed");
                return Err(LaunchOutcome::Retryable {
                    code: "EksClusterUnreadable".into(),
                    message: format!(
                        "reading EKS cluster {} for the node's bootstrap: {e}",
                        eks.cluster_name
                    ),
                });
            }
        };
        capstan_reconcile::machine_user_data(machine, &eks.cluster_name, &cluster).map_err(|e| {
            warn!(object = %key_of(machine), step = "bootstrap", error = %e, "no user data could be written");
            match e {
                capstan_reconcile::BootstrapError::InvalidCluster { .. } => {
                    LaunchOutcome::Retryable {
                        code: "EksClusterNotReady".into(),
                        message: e.to_string(),
                    }
                }
                _ => LaunchOutcome::Final {
                    code: "InvalidBootstrap".into(),
                    message: e.to_string(),
                },
            }
        })
    }

    /// One RunInstances for one Machine, its error classified for the decision.
    async fn launch(
        &self,
        machine: &Machine,
        request: capstan_model::LaunchRequest,
    ) -> LaunchOutcome {
        info!(object = %key_of(machine), step = "launch", instance_type = %request.instance_type, subnet = %request.subnet_id, "launching");
        let result = self
            .compute
            .run_instances(vec![request.clone()])
            .await
            .into_iter()
            .next();
        match result {
            Some(Ok(instance)) => LaunchOutcome::Launched(found(instance)),
            Some(Err(e)) => {
                warn!(object = %key_of(machine), step = "launch", error = %e, "launch failed");
                launch_outcome(e, &request)
            }
            None => LaunchOutcome::Retryable {
                code: "NoResult".to_string(),
                message: "RunInstances returned no result".to_string(),
            },
        }
    }

    /// A live instance launched for this Machine, if EC2 already shows one: one that
    /// carries every tag of the Machine (installation, namespace, cluster, name, uid),
    /// so a forged uid in another namespace adopts nothing. Every match is looked at.
    async fn find_instance(
        &self,
        machine: &Machine,
    ) -> Result<Option<FoundInstance>, ComputeError> {
        let Some(tags) = ownership_tags(machine, &self.installation) else {
            return Ok(None);
        };
        let instances = self.compute.describe_instances(tags).await?;
        let mut live: Vec<Instance> = instances
            .into_iter()
            .filter(|i| i.state.is_live() && owns_launch_index(machine, i.launch_index))
            .collect();
        // Prefer the one launched with this Machine's token (its batch's, for a
        // member), then the running one.
        let uid = match &machine.status.launch_batch {
            Some(batch) => Some(batch.token.clone()),
            None => machine.metadata.uid.clone(),
        };
        live.sort_by_key(|i| {
            (
                i.client_token.is_some() && i.client_token != uid,
                i.state != InstanceState::Running,
                i.launch_time,
            )
        });
        Ok(live.into_iter().next().map(found))
    }

    /// The instance `instance_id` as EC2 shows it, if it carries every tag of `machine`
    /// (see [`ownership_tags`]); None if it does not, or EC2 does not show it (yet).
    pub(crate) async fn owned_instance(
        &self,
        machine: &Machine,
        instance_id: &str,
    ) -> Result<Option<Instance>, ComputeError> {
        let Some(tags) = ownership_tags(machine, &self.installation) else {
            return Ok(None);
        };
        let instances = self.compute.describe_instances(tags).await?;
        Ok(instances
            .into_iter()
            .find(|i| i.instance_id == instance_id && owns_launch_index(machine, i.launch_index)))
    }

    /// Leaves an instance that is not provably the Machine's alone, says so in the log
    /// and once on the Machine (`InstanceOwned` False), and carries on with the plan.
    pub(crate) async fn refuse_not_owned(
        &self,
        machine: &Machine,
        instance_id: &str,
        step: &str,
        observed_rv: u64,
    ) -> Result<(), Interrupt> {
        warn!(object = %key_of(machine), step, instance = %instance_id, "refusing: the instance does not carry this Machine's tags (namespace, cluster, machine, uid)");
        if let Some(updated) =
            machine_decisions::record_not_owned(machine, instance_id, self.clock.now())
        {
            match self.put_machine(&updated, observed_rv).await {
                Ok(()) | Err(StoreError::Conflict) => {}
                Err(e) => return Err(Interrupt::Failed(e.into())),
            }
        }
        Ok(())
    }
}

/// A table-write action as the item write it performs; None for an EC2 call.
/// A Put of an object's observed item: how every plan that writes starts.
fn is_observed_put(write: &Write) -> bool {
    matches!(write, Write::Put { item, .. } if item_key(item).is_some_and(|k| k.sk.ends_with("#status")))
}

fn write_of(action: &Action) -> Option<Write> {
    Some(match action {
        Action::PutDesired { object, expect } => Write::Put {
            item: encode_desired(object, version_after(*expect)),
            expect: *expect,
        },
        Action::DeleteDesired { key, expect } => Write::Delete {
            key: ItemKey::of(key, Part::Desired),
            expect: *expect,
        },
        Action::PutObserved { object, expect } => Write::Put {
            item: encode_observed(
                object,
                &spec_hash(&object.spec_json()),
                version_after(*expect),
            ),
            expect: *expect,
        },
        Action::DeleteObserved { key, expect } => {
            info!(object = %key, step = "release", "removing the observed item");
            Write::Delete {
                key: ItemKey::of(key, Part::Observed),
                expect: *expect,
            }
        }
        Action::Launch { .. }
        | Action::Terminate { .. }
        | Action::FindInstance { .. }
        | Action::ObserveNode { .. }
        | Action::DeleteNode { .. }
        | Action::DrainNode { .. }
        | Action::TagInstance { .. } => return None,
    })
}

/// A RunInstances error as the decision's outcome for a launch of `request`.
pub(crate) fn launch_outcome(
    e: ComputeError,
    request: &capstan_model::LaunchRequest,
) -> LaunchOutcome {
    match e {
        ComputeError::Invalid { code, message } => LaunchOutcome::Final { code, message },
        ComputeError::Unfulfillable { code, message } => LaunchOutcome::Unfulfillable {
            code,
            message,
            offering: Offering {
                instance_type: request.instance_type.clone(),
                subnet: request.subnet_id.clone(),
            },
        },
        ComputeError::Unavailable(message) => LaunchOutcome::Unknown {
            code: "ServiceUnavailable".to_string(),
            message,
        },
        throttled @ ComputeError::Throttled { .. } => LaunchOutcome::Throttled {
            code: throttled.code().to_string(),
            message: throttled.to_string(),
        },
    }
}

/// What a reconcile did: performed its plan (and when to look again), or, asked to
/// defer, handed back a launch to be made together with others.
// Short-lived, one per reconcile: boxing the deferred plans would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reconciled {
    Done(Option<Duration>),
    Launch(DeferredLaunch),
    Terminate(DeferredTerminate),
}

/// A Machine's plan that (after its writes) terminates the Machine's instance, not yet
/// performed: the Machine reconciler terminates several in one call
/// ([`crate::terminate_batch`]).
pub(crate) struct DeferredTerminate {
    pub key: ObjectKey,
    /// The plan's actions: its writes, then the `Terminate`.
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
    pub desired: Option<Write>,
    pub machine: Machine,
    pub instance_id: String,
    pub observed_rv: u64,
}

impl DeferredTerminate {
    fn of(key: &ObjectKey, plan: &Plan, desired: Option<Write>) -> Option<DeferredTerminate> {
        let (last, writes) = plan.actions.split_last()?;
        let Action::Terminate {
            machine,
            instance_id,
            observed_rv,
        } = last
        else {
            return None;
        };
        if !writes.iter().all(|a| write_of(a).is_some()) {
            return None;
        }
        Some(DeferredTerminate {
            key: key.clone(),
            actions: plan.actions.clone(),
            requeue_after: plan.requeue_after,
            desired,
            machine: machine.clone(),
            instance_id: instance_id.clone(),
            observed_rv: *observed_rv,
        })
    }
}

/// A Machine's plan that writes the Machine (Provisioning) and then launches its
/// instance, not yet performed: the Machine reconciler launches identical ones
/// together ([`crate::launch_batch`]).
/// The class a Machine's desired item resolves its `launchRef` against, read from the
/// raw item (the class is read before the Machine is decoded); None without a
/// `launchRef`.
fn referenced_class(items: &[capstan_model::Item]) -> Option<String> {
    let spec = items
        .iter()
        .find_map(|i| match (item_key(i), i.get("spec")) {
            (Some(k), Some(AttrValue::M(spec))) if k.sk.starts_with("Machine#") => Some(spec),
            _ => None,
        })?;
    spec.get("launchRef")?;
    match spec.get("machineClass") {
        Some(AttrValue::S(class)) if !class.is_empty() => Some(class.clone()),
        _ => None,
    }
}

pub(crate) struct DeferredLaunch {
    pub key: ObjectKey,
    /// The plan's actions: its writes, then the `Launch`.
    pub actions: Vec<Action>,
    pub requeue_after: Option<Duration>,
    /// The check that the Machine's desired item is still the one decided from.
    pub desired: Option<Write>,
    /// The Machine as the plan writes it, and the version that write leaves.
    pub machine: Machine,
    pub observed_rv: u64,
    pub request: capstan_model::LaunchRequest,
}

impl DeferredLaunch {
    /// The plan as a deferred launch, if it is one that can share a call: writes only,
    /// then a fresh launch (not a recovery, no bootstrap user data to render per
    /// Machine).
    fn of(key: &ObjectKey, plan: &Plan, desired: Option<Write>) -> Option<DeferredLaunch> {
        let (last, writes) = plan.actions.split_last()?;
        let Action::Launch {
            machine,
            request,
            observed_rv,
            recover: false,
            bootstrap: None,
        } = last
        else {
            return None;
        };
        if writes.is_empty() || !writes.iter().all(|a| write_of(a).is_some()) {
            return None;
        }
        Some(DeferredLaunch {
            key: key.clone(),
            actions: plan.actions.clone(),
            requeue_after: plan.requeue_after,
            desired,
            machine: machine.clone(),
            observed_rv: *observed_rv,
            request: request.clone(),
        })
    }
}

pub(crate) fn found(i: Instance) -> FoundInstance {
    FoundInstance {
        instance_id: i.instance_id,
        instance_type: i.instance_type,
        subnet_id: i.subnet_id,
        availability_zone: i.availability_zone,
        private_ip: i.private_ip,
        state: i.state,
    }
}

pub(crate) fn key_of(m: &Machine) -> ObjectKey {
    ObjectKey::new(
        &m.metadata.namespace,
        &m.spec.cluster_name,
        Kind::Machine,
        &m.metadata.name,
    )
}

/// Decodes a Machine's observed item read through the instance index.
pub(crate) fn machine_from(tree: &Tree, key: &ObjectKey) -> Option<(Machine, u64)> {
    if let Some(unreadable) = tree.unreadable(Kind::Machine, &key.name) {
        warn!(object = %key, problem = %unreadable.describe(), "cannot read the Machine's observed item; not recording on it");
        return None;
    }
    let stored = tree.get(Kind::Machine, &key.name)?;
    Some((stored.object.as_machine()?.clone(), stored.observed_rv?))
}
