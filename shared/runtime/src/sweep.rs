//! drift-sweep: the constant-work safety net. On a schedule it asks every object's
//! reconciler to look again (repairing whatever a lost event missed), brings each
//! Machine's recorded instance state in line with EC2, and terminates instances that
//! carry this installation's tag but belong to no Machine (after a grace period, so a
//! launch whose id is not recorded yet is never mistaken for a leak).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item::{self, AttrValue, Item};
use capstan_model::labels::{TAG_INSTALLATION, TAG_MACHINE_UID};
use capstan_model::{Expect, InstanceState, Kind, Object, ObjectKey};
use capstan_reconcile::Tree;
use capstan_reconcile::launch::{proves_ownership, tags_consistent};
use capstan_reconcile::machine::record_instance_state;
use tracing::{info, warn};

use crate::autoscale::autoscaled;
use crate::control_plane::{ControlPlane, HandlerError};
use crate::events::{autoscale_event, resync_event};
use crate::ports::{Bus, Compute, Instance, Store, StoreError, Workload};
use crate::requeue::{is_marker_partition, outlived, parse_marker};

/// An instance tagged as ours with no Machine is terminated only when older than this.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(300);

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub resynced: usize,
    pub states_repaired: usize,
    pub orphans_terminated: Vec<String>,
    /// Steps that failed (one item, one batch of events, one call) and were skipped:
    /// logged, and left for the next sweep, never stopping the others.
    pub failures: usize,
    /// Objects whose observed item cannot be read (left alone, reported).
    pub unreadable: usize,
    /// Requeue markers long past due removed ([`crate::requeue::outlived`]).
    pub markers_removed: usize,
}

impl<S: Store, C: Compute, B: Bus, W: Workload> ControlPlane<S, C, B, W> {
    /// One pass of the safety net. Only reading the table can fail it as a whole; a
    /// failure on one item, one batch of resync events or one EC2 call is logged,
    /// counted in [`SweepReport::failures`] and skipped.
    ///
    /// # Orphans, only on positive evidence
    /// An instance of this installation is terminated as an orphan only when all of
    /// these hold: it is live and older than [`ORPHAN_GRACE`]; its Capstan tags agree
    /// with one another ([`tags_consistent`]); where EC2 reports its ClientToken, the
    /// token is its machine-uid tag (Capstan launches with the uid; an instance tagged
    /// by hand does not carry it); and no item of the table, readable or not, mentions
    /// its machine uid or its instance id.
    pub async fn sweep(&self) -> Result<SweepReport, HandlerError> {
        let now = self.clock.now();
        let mut report = SweepReport::default();

        // What EC2 says about every instance of this installation. Without it the
        // sweep still resyncs every object; states and orphans wait for the next one.
        let instances = match self
            .compute
            .describe_instances(vec![(
                TAG_INSTALLATION.to_string(),
                self.installation.clone(),
            )])
            .await
        {
            Ok(instances) => Some(instances),
            Err(e) => {
                warn!(step = "sweep", error = %e, "describing instances failed; states and orphans wait for the next sweep");
                report.failures += 1;
                None
            }
        };
        let by_id: Option<BTreeMap<&str, &Instance>> = instances
            .as_ref()
            .map(|all| all.iter().map(|i| (i.instance_id.as_str(), i)).collect());
        // Instances that may be orphans, and the ids and uids that would save them.
        let candidates: Vec<&Instance> = instances
            .iter()
            .flatten()
            .filter(|i| i.state.is_live() && older_than(i.launch_time, now, ORPHAN_GRACE))
            .filter(|i| tags_consistent(&i.tags))
            .filter(|i| {
                let uid = i.tags.get(TAG_MACHINE_UID);
                i.client_token.is_none() || i.client_token.as_ref() == uid
            })
            .collect();
        let wanted: BTreeSet<&str> = candidates
            .iter()
            .flat_map(|i| {
                [
                    Some(i.instance_id.as_str()),
                    i.tags.get(TAG_MACHINE_UID).map(String::as_str),
                ]
            })
            .flatten()
            .collect();

        // The table, page by page and partition by partition: memory holds one page
        // and one partition, whatever the table's size. Only a page that cannot be
        // read fails the sweep (there is no way past it); anything else is skipped.
        let mut mentioned: BTreeSet<&str> = BTreeSet::new();
        let mut partition: Vec<Item> = Vec::new();
        let mut start = None;
        loop {
            let page = self.store.scan_page("", start).await?;
            mentioned.extend(mentioned_in(&page.items, &wanted));
            for it in page.items {
                let Some(ik) = item::item_key(&it) else {
                    continue;
                };
                if partition
                    .first()
                    .and_then(item::item_key)
                    .is_some_and(|first| first.pk != ik.pk)
                {
                    let done = std::mem::take(&mut partition);
                    self.sweep_partition(&done, by_id.as_ref(), now, &mut report)
                        .await;
                }
                partition.push(it);
            }
            match page.next {
                Some(next) => start = Some(next),
                None => break,
            }
        }
        self.sweep_partition(&partition, by_id.as_ref(), now, &mut report)
            .await;

        // Instances tagged as ours that nothing in the table mentions.
        let orphans: Vec<String> = candidates
            .iter()
            .filter(|i| {
                !mentioned.contains(i.instance_id.as_str())
                    && i.tags
                        .get(TAG_MACHINE_UID)
                        .is_none_or(|uid| !mentioned.contains(uid.as_str()))
            })
            .map(|i| i.instance_id.clone())
            .collect();
        if !orphans.is_empty() {
            warn!(step = "sweep", instances = ?orphans, "terminating instances no Machine owns");
            report.orphans_terminated = self.terminate_orphans(orphans, &mut report.failures).await;
        }
        info!(
            step = "sweep",
            resynced = report.resynced,
            repaired = report.states_repaired,
            orphans = report.orphans_terminated.len(),
            failures = report.failures,
            unreadable = report.unreadable,
            markers_removed = report.markers_removed,
            "sweep done"
        );
        Ok(report)
    }

    /// Removes the markers whose chain ended without removing them (its last message
    /// dead-lettered, or the removal failed): sooner than the table's TTL, so the
    /// table holds only what is live. Conditional on the version read.
    async fn remove_outlived_markers(
        &self,
        items: &[Item],
        now: capstan_model::Timestamp,
        report: &mut SweepReport,
    ) {
        for it in items {
            let (Some(key), Some(marker)) = (item::item_key(it), parse_marker(it)) else {
                continue;
            };
            if !outlived(&marker, now) {
                continue;
            }
            match self.store.delete(&key, Expect::Version(marker.rv)).await {
                Ok(()) => report.markers_removed += 1,
                Err(StoreError::Conflict) => {}
                Err(e) => {
                    warn!(step = "sweep", marker = %key.sk, error = %e, "removing an outlived requeue marker failed; skipped");
                    report.failures += 1;
                }
            }
        }
    }

    /// One partition (one cluster's items): asks every object's reconciler to look
    /// again, reports what cannot be read, and repairs recorded instance states. A
    /// partition a store returned in two parts is handled as two: that only repeats
    /// resyncs and conditional writes.
    async fn sweep_partition(
        &self,
        items: &[Item],
        by_id: Option<&BTreeMap<&str, &Instance>>,
        now: capstan_model::Timestamp,
        report: &mut SweepReport,
    ) {
        let Some(pk) = items.first().and_then(item::item_key).map(|k| k.pk) else {
            return;
        };
        if is_marker_partition(&pk) {
            self.remove_outlived_markers(items, now, report).await;
            return;
        }
        let keys: BTreeSet<ObjectKey> = items
            .iter()
            .filter_map(item::item_key)
            .filter_map(|ik| ik.parse().map(|(key, _)| key))
            .collect();
        let tree = Tree::from_items(items);
        let mut resyncs: Vec<_> = keys.iter().map(|k| resync_event(k, now)).collect();
        // The autoscaler's scheduled check, for a Cluster it has something to do for.
        resyncs.extend(
            keys.iter()
                .filter(|k| k.kind == Kind::Cluster && autoscaled(&tree))
                .map(|k| autoscale_event(k, now)),
        );
        for chunk in resyncs.chunks(10) {
            match self.bus.put_events(chunk.to_vec()).await {
                Ok(()) => report.resynced += chunk.len(),
                Err(e) => {
                    warn!(step = "sweep", partition = %pk, error = %e, "publishing resync events failed; skipped");
                    report.failures += 1;
                }
            }
        }
        for unreadable in tree.all_unreadable() {
            warn!(step = "sweep", partition = %pk, problem = %unreadable.describe(), "an object cannot be read; left alone");
            report.unreadable += 1;
        }
        // Without EC2's answer there is nothing to repair states from.
        let Some(by_id) = by_id else {
            return;
        };
        for stored in tree.of_kind(Kind::Machine) {
            match self.repair_state(stored, by_id, now).await {
                Ok(true) => report.states_repaired += 1,
                Ok(false) => {}
                Err(e) => {
                    warn!(step = "sweep", object = %stored.key(), error = %e, "repairing the instance state failed; skipped");
                    report.failures += 1;
                }
            }
        }
    }

    /// Brings one Machine's recorded instance state in line with EC2, writing its
    /// observed item conditionally on the version the scan read (a conflict means
    /// someone else just wrote it: the next sweep looks again). An instance that does
    /// not carry the Machine's tags is not its own: nothing is recorded from it.
    async fn repair_state(
        &self,
        stored: &capstan_model::StoredObject,
        by_id: &BTreeMap<&str, &Instance>,
        now: capstan_model::Timestamp,
    ) -> Result<bool, HandlerError> {
        let Some(m) = stored.object.as_machine() else {
            return Ok(false);
        };
        let (Some(id), Some(recorded), Some(rv)) = (
            &m.status.instance_id,
            m.status.instance_state,
            stored.observed_rv,
        ) else {
            return Ok(false);
        };
        let actual = match by_id.get(id.as_str()) {
            Some(i) if !proves_ownership(&i.tags, i.launch_index, m, &self.installation) => {
                warn!(step = "sweep", object = %stored.key(), instance = %id, "the instance the Machine records does not carry its tags; not recording its state");
                return Ok(false);
            }
            Some(i) => i.state,
            // EC2 forgets terminated instances after a while.
            None if m
                .status
                .instance_state_time
                .is_some_and(|t| older_than(t, now, ORPHAN_GRACE)) =>
            {
                InstanceState::Terminated
            }
            None => return Ok(false),
        };
        if actual == recorded {
            return Ok(false);
        }
        let Some(updated) = record_instance_state(m, id, actual, now) else {
            return Ok(false);
        };
        let object = Object::Machine(updated);
        let hash = capstan_model::hash::spec_hash(&object.spec_json());
        match self
            .store
            .put(
                item::encode_observed(&object, &hash, rv + 1),
                Expect::Version(rv),
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Terminates the orphans in one call; if EC2 refuses the call, one by one, so one
    /// instance it refuses does not keep the others alive. Returns those terminated.
    async fn terminate_orphans(&self, orphans: Vec<String>, failures: &mut usize) -> Vec<String> {
        let guard = (TAG_INSTALLATION.to_string(), self.installation.clone());
        match self
            .compute
            .terminate_instances(orphans.clone(), guard.clone())
            .await
        {
            Ok(_) => return orphans,
            Err(e) if orphans.len() == 1 => {
                warn!(step = "sweep", instances = ?orphans, error = %e, "terminating an orphan failed; skipped");
                *failures += 1;
                return Vec::new();
            }
            Err(e) => {
                warn!(step = "sweep", error = %e, "terminating orphans together failed; one by one");
            }
        }
        let mut done = Vec::new();
        for id in orphans {
            match self
                .compute
                .terminate_instances(vec![id.clone()], guard.clone())
                .await
            {
                Ok(_) => done.push(id),
                Err(e) => {
                    warn!(step = "sweep", instance = %id, error = %e, "terminating an orphan failed; skipped");
                    *failures += 1;
                }
            }
        }
        done
    }
}

/// Which of `wanted` (instance ids, machine uids) some item mentions anywhere, in any
/// attribute, whether or not the item decodes or is laid out as Capstan's.
fn mentioned_in<'a>(items: &[Item], wanted: &BTreeSet<&'a str>) -> BTreeSet<&'a str> {
    fn walk<'a>(v: &AttrValue, wanted: &BTreeSet<&'a str>, found: &mut BTreeSet<&'a str>) {
        match v {
            AttrValue::S(s) => {
                if let Some(w) = wanted.get(s.as_str()) {
                    found.insert(w);
                }
            }
            AttrValue::L(l) => l.iter().for_each(|e| walk(e, wanted, found)),
            AttrValue::M(m) => m.values().for_each(|e| walk(e, wanted, found)),
            AttrValue::N(_) | AttrValue::Bool(_) | AttrValue::Null => {}
        }
    }
    let mut found = BTreeSet::new();
    if wanted.is_empty() {
        return found;
    }
    for it in items {
        for v in it.values() {
            walk(v, wanted, &mut found);
        }
    }
    found
}

fn older_than(t: capstan_model::Timestamp, now: capstan_model::Timestamp, age: Duration) -> bool {
    t.checked_add(age)
        .map(|limit| limit <= now)
        .unwrap_or(false)
}
