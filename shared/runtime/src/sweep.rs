//! drift-sweep: the constant-work safety net. On a schedule it asks every object's
//! reconciler to look again (repairing whatever a lost event missed), brings each
//! Machine's recorded instance state in line with EC2, and terminates instances that
//! carry this installation's tag but belong to no Machine (after a grace period, so a
//! launch whose id is not recorded yet is never mistaken for a leak).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_model::item;
use capstan_model::labels::{TAG_INSTALLATION, TAG_MACHINE_UID};
use capstan_model::{InstanceState, Kind, ObjectKey};
use capstan_reconcile::Tree;
use tracing::{info, warn};

use crate::control_plane::{ControlPlane, HandlerError};
use crate::events::resync_event;
use crate::ports::{Bus, Compute, Store};

/// An instance tagged as ours with no Machine is terminated only when older than this.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(300);

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub resynced: usize,
    pub states_repaired: usize,
    pub orphans_terminated: Vec<String>,
}

impl<S: Store, C: Compute, B: Bus> ControlPlane<S, C, B> {
    pub async fn sweep(&self) -> Result<SweepReport, HandlerError> {
        let now = self.clock.now();
        let mut report = SweepReport::default();

        // One Scan: every object of every cluster.
        let items = self.store.scan("").await?;
        let mut keys: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut by_partition: BTreeMap<String, Vec<capstan_model::Item>> = BTreeMap::new();
        for it in items {
            if let Some(ik) = item::item_key(&it)
                && let Some((key, _)) = ik.parse()
            {
                keys.insert(key);
                by_partition.entry(ik.pk.clone()).or_default().push(it);
            }
        }
        let resyncs: Vec<_> = keys.iter().map(|k| resync_event(k, now)).collect();
        for chunk in resyncs.chunks(10) {
            self.bus.put_events(chunk.to_vec()).await?;
        }
        report.resynced = keys.len();

        // What EC2 says about every instance of this installation.
        let instances = self
            .compute
            .describe_instances(vec![(
                TAG_INSTALLATION.to_string(),
                self.installation.clone(),
            )])
            .await?;
        let by_id: BTreeMap<&str, &crate::ports::Instance> = instances
            .iter()
            .map(|i| (i.instance_id.as_str(), i))
            .collect();
        let mut machine_uids = BTreeSet::new();
        for items in by_partition.values() {
            let tree = Tree::from_items(items);
            for stored in tree.of_kind(Kind::Machine) {
                let Some(m) = stored.object.as_machine() else {
                    continue;
                };
                if let Some(uid) = &m.metadata.uid {
                    machine_uids.insert(uid.clone());
                }
                let (Some(id), Some(recorded)) = (&m.status.instance_id, m.status.instance_state)
                else {
                    continue;
                };
                let actual = match by_id.get(id.as_str()) {
                    Some(i) => i.state,
                    // EC2 forgets terminated instances after a while.
                    None if m
                        .status
                        .instance_state_time
                        .is_some_and(|t| older_than(t, now, ORPHAN_GRACE)) =>
                    {
                        InstanceState::Terminated
                    }
                    None => continue,
                };
                if actual != recorded
                    && stored.observed_rv.is_some()
                    && self.record_state(id, actual, now).await?
                {
                    report.states_repaired += 1;
                }
            }
        }

        // Instances tagged as ours that no Machine knows.
        let orphans: Vec<String> = instances
            .iter()
            .filter(|i| i.state.is_live() && older_than(i.launch_time, now, ORPHAN_GRACE))
            .filter(|i| {
                i.tags
                    .get(TAG_MACHINE_UID)
                    .is_none_or(|uid| !machine_uids.contains(uid))
            })
            .map(|i| i.instance_id.clone())
            .collect();
        if !orphans.is_empty() {
            warn!(step = "sweep", instances = ?orphans, "terminating instances no Machine owns");
            let guard = (TAG_INSTALLATION.to_string(), self.installation.clone());
            self.compute
                .terminate_instances(orphans.clone(), guard)
                .await?;
            report.orphans_terminated = orphans;
        }
        info!(
            step = "sweep",
            resynced = report.resynced,
            repaired = report.states_repaired,
            orphans = report.orphans_terminated.len(),
            "sweep done"
        );
        Ok(report)
    }
}

fn older_than(t: capstan_model::Timestamp, now: capstan_model::Timestamp, age: Duration) -> bool {
    t.checked_add(age)
        .map(|limit| limit <= now)
        .unwrap_or(false)
}
