//! The entry points, one per function: the stream router, the reconcilers' queue
//! handler, and the EC2 instance-events handler (state changes, spot interruption
//! warnings and rebalance recommendations). Each takes the batch its trigger
//! delivers and reports which messages failed, so one bad message never blocks or
//! re-runs the rest (SQS ReportBatchItemFailures).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item::{Item, ItemKey, Part, object_prefix, partition_key};
use capstan_model::{Kind, ObjectKey, Timestamp};
use capstan_reconcile::Tree;
use capstan_reconcile::machine::{Interruption, record_instance_state, record_interruption};
use tracing::{debug, error, info, warn};

use crate::control_plane::{
    ControlPlane, DeferredLaunch, DeferredTerminate, HandlerError, Reconciled, machine_from,
};
use crate::events::{
    ObjectEvent, changed_event, event_time, instance_state_change, requeue_event, requeued_at,
};
use crate::ports::{Bus, BusEvent, Compute, Expect, Store, StoreError, StreamRecord, Workload};
use crate::requeue::{Chain, Marker, marker_item, marker_key, parse_marker};
use crate::routes::{EC2_REBALANCE, EC2_SOURCE, EC2_SPOT_INTERRUPTION, Reconciler};

/// SQS delays a message by at most 15 minutes.
pub const MAX_REQUEUE: Duration = Duration::from_secs(900);
/// An instance event for an instance no Machine records yet is retried while this
/// young while the instance is pending or running (the launch may not be recorded, or
/// the index may lag); older, or in any later state, it is dropped.
pub const UNKNOWN_INSTANCE_PATIENCE: Duration = Duration::from_secs(120);

/// One message of a batch: its id (for partial failures) and its event.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub message_id: String,
    pub event: BusEvent,
}

/// Which messages of a batch failed and should be delivered again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub failed: Vec<String>,
    /// Autoscaler passes that raised a pool's replicas, and that removed a node.
    pub scaled_up: u64,
    pub scaled_down: u64,
    /// Pods a scale-up waited on, from created to scheduled.
    pub pending_to_scheduled: Vec<std::time::Duration>,
}

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// stream-router: turns table changes into "<Kind> Changed" events on the bus.
    pub async fn route_stream(&self, records: &[StreamRecord]) -> Result<usize, HandlerError> {
        let now = self.clock.now();
        let events: Vec<BusEvent> = records
            .iter()
            .filter_map(|r| changed_event(r, now))
            .collect();
        let n = events.len();
        for chunk in events.chunks(10) {
            self.bus.put_events(chunk.to_vec()).await?;
        }
        Ok(n)
    }

    /// A reconciler's queue handler: works out which objects the batch names, reconciles
    /// each once (events for the same object coalesce), and re-queues the ones that
    /// asked to be looked at again.
    pub async fn handle_batch(&self, reconciler: Reconciler, batch: Vec<Delivery>) -> BatchOutcome {
        if reconciler == Reconciler::InstanceEvents {
            return self.handle_instance_events(batch).await;
        }
        let mut outcome = BatchOutcome::default();
        let mut by_target: BTreeMap<Target, Vec<String>> = BTreeMap::new();
        // Each requeue's time of asking ([`crate::requeue`]); other messages have none.
        let mut requeued: BTreeMap<String, Option<Timestamp>> = BTreeMap::new();
        for d in batch {
            requeued.insert(d.message_id.clone(), requeued_at(&d.event));
            match targets(reconciler, &d.event) {
                Ok(ts) => {
                    for t in ts {
                        by_target.entry(t).or_default().push(d.message_id.clone());
                    }
                }
                Err(e) => {
                    error!(reconciler = reconciler.name(), message = %d.message_id, error = %e, "malformed event; it will reach the dead-letter queue");
                    outcome.failed.push(d.message_id);
                }
            }
        }
        // Related targets become the objects they concern before events coalesce, so
        // the status changes of ten Machines in one batch wake their health check once.
        let mut by_object: BTreeMap<Target, Vec<String>> = BTreeMap::new();
        let mut checks_read: BTreeMap<(String, Kind), Vec<Item>> = BTreeMap::new();
        for (target, messages) in by_target {
            let Target::Related {
                via,
                kind,
                selecting,
            } = &target
            else {
                by_object.entry(target).or_default().extend(messages);
                continue;
            };
            match self.related(via, *kind, *selecting, &mut checks_read).await {
                Ok(keys) => {
                    for key in keys {
                        by_object
                            .entry(Target::Object(key))
                            .or_default()
                            .extend(messages.iter().cloned());
                    }
                }
                Err(e) => {
                    warn!(reconciler = reconciler.name(), object = %via, error = %e, retryable = e.is_retryable(), "finding the objects an event concerns failed");
                    outcome.failed.extend(messages);
                }
            }
        }
        // The Machine reconciler keeps its launches and terminations back until every
        // Machine of the batch is decided, then makes identical launches together
        // (crate::launch_batch) and the terminations in one call (crate::terminate_batch).
        let defer = reconciler == Reconciler::Machine && self.batch_launches;
        let mut deferred: Vec<(DeferredLaunch, Vec<String>)> = Vec::new();
        let mut terminations: Vec<(DeferredTerminate, Vec<String>)> = Vec::new();
        let mut deferred_looks: BTreeMap<ObjectKey, Look> = BTreeMap::new();
        for (target, messages) in by_object {
            let chain = match &target {
                Target::Autoscale(_) => Chain::Autoscale,
                _ => Chain::Reconcile,
            };
            let look = self
                .look(target.key(), chain, requeues_in(&messages, &requeued))
                .await;
            if look.stale {
                debug!(reconciler = reconciler.name(), object = %target.key(), "a later decision's requeue is on its way; this one is dropped");
                continue;
            }
            if let Target::Autoscale(cluster) = &target {
                match self.autoscale_target(reconciler, cluster, &look).await {
                    Ok(o) => {
                        outcome.scaled_up += o.scaled_up;
                        outcome.scaled_down += o.scaled_down;
                        outcome.pending_to_scheduled.extend(o.pending_to_scheduled);
                    }
                    Err(e) => {
                        warn!(reconciler = reconciler.name(), object = %cluster, error = %e, retryable = e.is_retryable(), "autoscaling failed");
                        outcome.failed.extend(messages);
                    }
                }
                continue;
            }
            let result = match &target {
                Target::Object(key) if defer && key.kind == Kind::Machine => {
                    match self.reconcile_or_defer(key, true).await {
                        Ok(Reconciled::Done(after)) => {
                            self.requeue(reconciler, key, &look, after).await
                        }
                        Ok(Reconciled::Launch(launch)) => {
                            deferred_looks.insert(key.clone(), look);
                            deferred.push((launch, messages));
                            continue;
                        }
                        Ok(Reconciled::Terminate(t)) => {
                            deferred_looks.insert(key.clone(), look);
                            terminations.push((t, messages));
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => self.reconcile_target(reconciler, target.key(), &look).await,
            };
            if let Err(e) = result {
                warn!(reconciler = reconciler.name(), object = %target.key(), error = %e, retryable = e.is_retryable(), "reconcile failed");
                outcome.failed.extend(messages);
            }
        }
        if !deferred.is_empty() || !terminations.is_empty() {
            let (launches, mut messages): (Vec<DeferredLaunch>, Vec<Vec<String>>) =
                deferred.into_iter().unzip();
            let (terminations, terminated): (Vec<DeferredTerminate>, Vec<Vec<String>>) =
                terminations.into_iter().unzip();
            let mut keys: Vec<ObjectKey> = launches.iter().map(|l| l.key.clone()).collect();
            keys.extend(terminations.iter().map(|t| t.key.clone()));
            messages.extend(terminated);
            let mut results = self.launch_together(launches).await;
            results.extend(self.terminate_together(terminations).await);
            for ((key, result), messages) in keys.iter().zip(results).zip(messages) {
                let result = match result {
                    Ok(after) => {
                        let look = deferred_looks
                            .remove(key)
                            .unwrap_or_else(|| Look::unread(Chain::Reconcile, self.clock.now()));
                        self.requeue(reconciler, key, &look, after).await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    warn!(reconciler = reconciler.name(), object = %key, error = %e, retryable = e.is_retryable(), "reconcile failed");
                    outcome.failed.extend(messages);
                }
            }
        }
        outcome.failed.sort();
        outcome.failed.dedup();
        outcome
    }

    async fn reconcile_target(
        &self,
        reconciler: Reconciler,
        key: &ObjectKey,
        look: &Look,
    ) -> Result<(), HandlerError> {
        let after = self.reconcile(key).await?;
        self.requeue(reconciler, key, look, after).await
    }

    /// Starts a look at `key`'s `chain`. A look that requeues asked for continues
    /// their chain: it reads the chain's marker first, and if only requeues asked for
    /// it and a later decision's is on its way, the look is stale.
    async fn look(&self, key: &ObjectKey, chain: Chain, requeues: Requeues) -> Look {
        let mut look = Look::unread(chain, self.clock.now());
        look.requeued = requeues != Requeues::None;
        if look.requeued {
            // Unread, nothing is dropped: at worst a look is repeated.
            match self.marker(key, chain).await {
                Ok(marker) => {
                    look.stale = match requeues {
                        Requeues::Only(newest) => marker.is_some_and(|m| m.supersedes(newest)),
                        _ => false,
                    };
                    look.marker = Some(marker);
                }
                Err(e) => debug!(object = %key, error = %e, "reading the requeue marker failed"),
            }
        }
        look
    }

    /// The requeue marker of `key`'s `chain`, if there is a readable one.
    async fn marker(&self, key: &ObjectKey, chain: Chain) -> Result<Option<Marker>, StoreError> {
        let mk = marker_key(key, chain);
        let items = self.store.query(&mk.pk, Some(&mk.sk)).await?;
        Ok(items
            .iter()
            .filter(|it| capstan_model::item::item_key(it).as_ref() == Some(&mk))
            .find_map(parse_marker))
    }

    /// Asks `reconciler` to look at `key` again `after` this long (None: not at all),
    /// keeping one requeue pending per object ([`crate::requeue`]): nothing is sent
    /// when a look no later is already on its way, and the message sent is recorded.
    async fn requeue(
        &self,
        reconciler: Reconciler,
        key: &ObjectKey,
        look: &Look,
        after: Option<Duration>,
    ) -> Result<(), HandlerError> {
        if after.is_none() && !look.requeued {
            return Ok(());
        }
        let now = self.clock.now();
        let mk = marker_key(key, look.chain);
        let known = match look.marker {
            Some(known) => Ok(known),
            None => self.marker(key, look.chain).await,
        };
        let Some(after) = after.map(|a| a.min(MAX_REQUEUE)) else {
            // A requeued look that asks for no other ends its chain and removes its
            // marker. If that fails, even on a conflict (someone wrote the marker
            // since), the message fails: redelivered, it finds the newer decision's
            // marker and is dropped, or removes the marker it reads then.
            if let Some(m) = known?
                && m.due <= now
            {
                self.store.delete(&mk, Expect::Version(m.rv)).await?;
            }
            return Ok(());
        };
        let due = now.checked_add(after).unwrap_or(now);
        if let Ok(Some(m)) = known
            && m.covers(now, due)
        {
            debug!(reconciler = reconciler.name(), object = %key, "a look no later is already on its way");
            return Ok(());
        }
        let event = requeue_event(key, look.chain, look.started, now);
        self.bus.requeue(reconciler.name(), event, after).await?;
        // Recorded only once sent, so a marker always names a message that exists;
        // unrecorded, a later requeue may repeat this one, nothing more.
        let Ok(marker) = known else {
            return Ok(());
        };
        let (rv, expect) = marker.map_or((0, Expect::Absent), |m| (m.rv, Expect::Version(m.rv)));
        match self
            .store
            .put(marker_item(&mk, due, look.started, rv), expect)
            .await
        {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => {
                debug!(object = %key, error = %e, "recording the requeue failed; a later one may repeat it")
            }
        }
        Ok(())
    }

    /// The autoscaler's pass for a Cluster, woken again while pods wait.
    async fn autoscale_target(
        &self,
        reconciler: Reconciler,
        cluster: &ObjectKey,
        look: &Look,
    ) -> Result<crate::autoscale::AutoscaleOutcome, HandlerError> {
        let outcome = self.autoscale(cluster).await?;
        self.requeue(reconciler, cluster, look, outcome.recheck)
            .await?;
        Ok(outcome)
    }

    /// The objects of `kind` that a change of `via` concerns: the deployments using a
    /// class; the health checks of a Machine's cluster — with `selecting`, only those
    /// whose selector matches the Machine's labels (a status change cannot change
    /// them; a spec change or a removal may have, so it wakes every check). Each
    /// partition's objects of `kind` are read once per batch (`read`).
    async fn related(
        &self,
        via: &ObjectKey,
        kind: Kind,
        selecting: bool,
        read: &mut BTreeMap<(String, Kind), Vec<Item>>,
    ) -> Result<Vec<ObjectKey>, HandlerError> {
        let pk = partition_key(&via.namespace, &via.cluster);
        let items = match read.entry((pk.clone(), kind)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(self.store.query(&pk, Some(&format!("{kind}#"))).await?)
            }
        };
        let tree = Tree::from_items(items);
        let labels = if selecting && via.kind == Kind::Machine {
            let own = self
                .store
                .query(&pk, Some(&object_prefix(Kind::Machine, &via.name)))
                .await?;
            Tree::from_items(&own)
                .get(Kind::Machine, &via.name)
                .and_then(|s| s.object.as_machine())
                .map(|m| (m.spec.cluster_name.clone(), m.metadata.labels.clone()))
        } else {
            None
        };
        let mut keys: Vec<ObjectKey> = tree
            .of_kind(kind)
            .filter(|s| match (&s.object, via.kind) {
                (capstan_model::Object::MachineDeployment(md), Kind::MachineClass) => {
                    md.spec.template.spec.machine_class == via.name
                }
                // A Machine that cannot be read (or is gone) wakes every check.
                (capstan_model::Object::MachineHealthCheck(hc), Kind::Machine) => {
                    labels.as_ref().is_none_or(|(cluster, labels)| {
                        hc.spec.cluster_name == *cluster && hc.spec.selector.matches(labels)
                    })
                }
                _ => true,
            })
            .map(|s| s.key())
            .collect();
        if via.kind == kind {
            keys.push(via.clone());
        }
        Ok(keys)
    }

    /// instance-events: records an EC2 state change on the Machine that owns the
    /// instance (found through the instance index); the Machine's reconciler takes it
    /// from there when the change event arrives.
    async fn handle_instance_events(&self, batch: Vec<Delivery>) -> BatchOutcome {
        let mut outcome = BatchOutcome::default();
        for d in batch {
            if let Some((instance_id, kind, at)) = instance_warning(&d.event) {
                if let Err(e) = self.record_interruption(&instance_id, kind, at).await {
                    warn!(instance = %instance_id, error = %e, "recording an interruption failed");
                    outcome.failed.push(d.message_id);
                }
                continue;
            }
            let Some((instance_id, state, at)) = instance_state_change(&d.event) else {
                error!(message = %d.message_id, "not an EC2 state-change notification; it will reach the dead-letter queue");
                outcome.failed.push(d.message_id);
                continue;
            };
            match self.record_state(&instance_id, state, at).await {
                Ok(true) => {}
                Ok(false) => {
                    let age = event_time(&d.event)
                        .and_then(|t| {
                            std::time::Duration::try_from(self.clock.now().duration_since(t)).ok()
                        })
                        .unwrap_or_default();
                    // Only a young instance's launch can still be unrecorded. An
                    // instance past `running` that no Machine records is gone or going
                    // with its Machine; and a Machine whose launch is unrecorded finds
                    // its instance by tag and reads its state then, so nothing waits
                    // on this event: retrying it would only fill the dead-letter queue.
                    let launching = matches!(
                        state,
                        capstan_model::InstanceState::Pending
                            | capstan_model::InstanceState::Running
                    );
                    if launching && age < UNKNOWN_INSTANCE_PATIENCE {
                        debug!(instance = %instance_id, "no Machine records this instance yet; retrying");
                        outcome.failed.push(d.message_id);
                    } else {
                        debug!(instance = %instance_id, "not a Capstan instance; ignored");
                    }
                }
                Err(e) => {
                    warn!(instance = %instance_id, error = %e, "recording instance state failed");
                    outcome.failed.push(d.message_id);
                }
            }
        }
        outcome
    }

    /// Records `state` on the Machine owning `instance_id`. False when no Machine does.
    pub async fn record_state(
        &self,
        instance_id: &str,
        state: capstan_model::InstanceState,
        at: capstan_model::Timestamp,
    ) -> Result<bool, HandlerError> {
        self.update_instance_machine(instance_id, "instance-state", |machine| {
            record_instance_state(machine, instance_id, state, at)
        })
        .await
    }

    /// Marks the Machine owning `instance_id` `Interrupted` (conditionally, like a state
    /// change); its MachineSet then brings up the replacement before letting it go. A
    /// warning about an instance no Machine records is dropped: two minutes later the
    /// instance is gone anyway, and its state changes still reach the Machine.
    pub async fn record_interruption(
        &self,
        instance_id: &str,
        kind: Interruption,
        at: capstan_model::Timestamp,
    ) -> Result<bool, HandlerError> {
        let found = self
            .update_instance_machine(instance_id, kind.reason(), |machine| {
                record_interruption(machine, instance_id, kind, at)
            })
            .await?;
        if !found {
            debug!(instance = %instance_id, "interruption warning for an instance no Machine records; ignored");
        }
        Ok(found)
    }

    /// Finds the Machine owning `instance_id` through the instance index, applies
    /// `update` (a pure decision: None when the report changes nothing) and writes the
    /// observed item conditionally, reading again on a conflict. False when no Machine
    /// owns the instance.
    ///
    /// Every match of the index is considered, not the first: a raw item in another
    /// partition may name the same instance. When more than one Machine names it, the
    /// instance's tags decide (one DescribeInstances per claimant, on this rare path
    /// only): the state is recorded on each Machine whose identity tags it carries, and
    /// on no other.
    async fn update_instance_machine(
        &self,
        instance_id: &str,
        step: &str,
        update: impl Fn(&capstan_model::Machine) -> Option<capstan_model::Machine>,
    ) -> Result<bool, HandlerError> {
        let claimants: Vec<(ItemKey, ObjectKey)> = self
            .store
            .find_by_instance(instance_id)
            .await?
            .into_iter()
            .filter_map(|ik| match ik.parse() {
                Some((key, Part::Observed)) if key.kind == Kind::Machine => Some((ik, key)),
                _ => None,
            })
            .collect();
        let contested = claimants.len() > 1;
        if contested {
            warn!(instance = %instance_id, claimants = claimants.len(), step, "several Machines name this instance; recording only on those whose tags it carries");
        }
        let mut recorded = false;
        for (ik, key) in &claimants {
            if self
                .update_claimant(ik, key, instance_id, step, contested, &update)
                .await?
            {
                recorded = true;
            }
        }
        Ok(recorded)
    }

    /// [`Self::update_instance_machine`] for one Machine the index names. With
    /// `contested`, only if the instance carries the Machine's identity tags.
    async fn update_claimant(
        &self,
        ik: &ItemKey,
        key: &ObjectKey,
        instance_id: &str,
        step: &str,
        contested: bool,
        update: &impl Fn(&capstan_model::Machine) -> Option<capstan_model::Machine>,
    ) -> Result<bool, HandlerError> {
        let mut checked = !contested;
        for _ in 0..crate::control_plane::CONFLICT_RETRIES {
            let items = self
                .store
                .query(&ik.pk, Some(&object_prefix(Kind::Machine, &key.name)))
                .await?;
            let Some((machine, rv)) = machine_from(&Tree::from_items(&items), key) else {
                return Ok(false);
            };
            if !checked {
                if self.owned_instance(&machine, instance_id).await?.is_none() {
                    warn!(object = %key, step, instance = %instance_id, "the instance does not carry this Machine's tags; not recording on it");
                    return Ok(false);
                }
                checked = true;
            }
            let Some(updated) = update(&machine) else {
                return Ok(true);
            };
            info!(object = %key, step, instance = %instance_id, "recorded");
            let object = capstan_model::Object::Machine(updated);
            let hash = capstan_model::hash::spec_hash(&object.spec_json());
            match self
                .store
                .put(
                    capstan_model::item::encode_observed(&object, &hash, rv + 1),
                    Expect::Version(rv),
                )
                .await
            {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(HandlerError::Store(StoreError::Unavailable(format!(
            "too many conflicts recording {step} for instance {instance_id}"
        ))))
    }
}

/// An EC2 spot interruption warning or rebalance recommendation: the instance, which,
/// and when. The detail is `{"instance-id": "i-…", "instance-action": "terminate"}` for
/// the warning and `{"instance-id": "i-…"}` for the recommendation.
pub fn instance_warning(
    event: &BusEvent,
) -> Option<(String, Interruption, capstan_model::Timestamp)> {
    if event.source != EC2_SOURCE {
        return None;
    }
    let kind = match event.detail_type.as_str() {
        EC2_SPOT_INTERRUPTION => Interruption::SpotInterruption,
        EC2_REBALANCE => Interruption::RebalanceRecommendation,
        _ => return None,
    };
    let id = event.detail.get("instance-id")?.as_str()?.to_string();
    Some((id, kind, event_time(event)?))
}

/// One look at a target: which chain it continues, when it began, and the chain's
/// requeue marker when it was read first ([`crate::requeue`]).
#[derive(Clone, Copy, Debug)]
struct Look {
    chain: Chain,
    started: Timestamp,
    /// Read before the reconcile (Some(None): there is none); None when not read.
    marker: Option<Option<Marker>>,
    /// A later decision's requeue is on its way: this look is dropped.
    stale: bool,
    /// A requeue asked for this look (perhaps beside other events): it continues
    /// or ends their chain.
    requeued: bool,
}

impl Look {
    fn unread(chain: Chain, started: Timestamp) -> Look {
        Look {
            chain,
            started,
            marker: None,
            stale: false,
            requeued: false,
        }
    }
}

/// Which of a look's messages are requeues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requeues {
    /// None: a change, an EC2 event or the sweep asked for the look.
    None,
    /// Some, beside messages from elsewhere (which are never stale).
    Some,
    /// Only requeues; the newest was asked for then.
    Only(Timestamp),
}

fn requeues_in(messages: &[String], requeued: &BTreeMap<String, Option<Timestamp>>) -> Requeues {
    let asked: Vec<Option<Timestamp>> = messages
        .iter()
        .map(|m| requeued.get(m).copied().flatten())
        .collect();
    match asked.iter().flatten().max() {
        None => Requeues::None,
        Some(newest) if asked.iter().all(Option::is_some) => Requeues::Only(*newest),
        Some(_) => Requeues::Some,
    }
}

/// What one event asks a reconciler to look at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Object(ObjectKey),
    /// Objects of `kind` related to `via` (deployments using a class, checks over a Machine).
    Related {
        via: ObjectKey,
        kind: Kind,
        /// Only the objects whose selector matches `via` (a Machine's status change).
        selecting: bool,
    },
    /// The autoscaler's pass for this Cluster.
    Autoscale(ObjectKey),
}

impl Target {
    fn key(&self) -> &ObjectKey {
        match self {
            Target::Object(k) => k,
            Target::Related { via, .. } => via,
            Target::Autoscale(k) => k,
        }
    }
}

fn targets(reconciler: Reconciler, event: &BusEvent) -> Result<BTreeSet<Target>, HandlerError> {
    let detail: ObjectEvent = serde_json::from_value(event.detail.clone())
        .map_err(|e| HandlerError::Malformed(format!("detail: {e}")))?;
    let own = reconciler
        .kind()
        .ok_or_else(|| HandlerError::Malformed("no kind for this reconciler".into()))?;
    let mut out = BTreeSet::new();
    let key = detail.key();
    if detail.autoscale {
        if reconciler == Reconciler::Cluster && key.kind == Kind::Cluster {
            out.insert(Target::Autoscale(key));
        }
        return Ok(out);
    }
    match (reconciler, key.kind) {
        (Reconciler::Deployment, Kind::MachineClass) => {
            out.insert(Target::Object(key.clone()));
            out.insert(Target::Related {
                via: key.clone(),
                kind: Kind::MachineDeployment,
                selecting: false,
            });
        }
        (Reconciler::HealthCheck, Kind::Machine) => {
            // A status write cannot change the Machine's labels, so only the checks
            // selecting them care; a spec change or a removal wakes them all.
            let status_only = detail.part.as_deref() == Some("status")
                && detail.change.as_deref() != Some("REMOVE");
            out.insert(Target::Related {
                via: key.clone(),
                kind: Kind::MachineHealthCheck,
                selecting: status_only,
            });
        }
        (_, kind) if kind == own => {
            out.insert(Target::Object(key.clone()));
        }
        _ => {}
    }
    if let Some(owner) = detail.owner_key().filter(|o| o.kind == own) {
        out.insert(Target::Object(owner));
    }
    Ok(out)
}
