//! One pending requeue per object.
//!
//! A reconcile ends by saying when to look at its object again, and the look is an
//! SQS message delayed until then. Every reconcile says so, whatever woke it (a
//! stream event, an EC2 event, the sweep, an earlier requeue), so without bookkeeping
//! each wake-up starts one more chain of messages for the same object: the benchmark
//! counted 195 of 298 requeues over a 103-Machine lifecycle sent while one for the
//! same object was already pending, due no later (docs/performance.md).
//!
//! A **marker** item per object and chain (the reconcile, or the autoscaler's pass for
//! a Cluster) records the requeue last sent: when it is due and when the reconcile
//! that asked for it began. It is written only after its message was sent, so a
//! marker always names a message that exists.
//! - **Covered**: a reconcile that wants a look no earlier than a marker's pending one
//!   sends nothing. That look comes first and decides again, from newer state.
//! - **Superseded**: a requeue message whose marker names a decision that began later
//!   is dropped on arrival: that decision read newer state and its message is on the
//!   way. If two reconciles of one object overlap, the later-begun decision wins, so
//!   a look can come when that decision asked rather than the earlier one. It still
//!   comes: this delays a look but never loses one.
//! - **Done**: a requeued look that asks for no further requeue deletes the marker.
//!   If that delete fails, the message fails too, and its redelivery tries again.
//!   A marker left anyway (its last message dead-lettered) is removed by the drift
//!   sweep once it is 15 minutes past due, or else by the table's TTL (`expiresAt`,
//!   a day after the due time).
//!
//! Markers are an optimisation and nothing more. A lost, stale or foreign marker
//! costs an extra message or a later look, never an instance.
//! Markers live in their own partition (`<namespace>#<cluster>#requeue`), so the
//! Queries over a cluster's partition never read them. Their sort keys
//! (`Requeue#…`) parse as no object, so the stream router publishes nothing for
//! them, and the template's stream filter keeps them from invoking it at all.

use std::time::Duration;

use capstan_model::item::{AttrValue, Item, ItemKey, PK, RV, SK, partition_key, version_of};
use capstan_model::{ObjectKey, Timestamp};

/// The sort-key prefix of every marker (the stream filter's exclusion).
pub const MARKER_PREFIX: &str = "Requeue#";
/// The attribute the table's TTL reads (infra/template.yaml): Unix seconds.
pub const TTL_ATTRIBUTE: &str = "expiresAt";
/// How long after its due time DynamoDB's TTL may remove a marker.
const MARKER_TTL: Duration = Duration::from_secs(24 * 3600);

/// Which chain of looks a marker keeps: an object's reconcile, or a Cluster's
/// autoscaler pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    Reconcile,
    Autoscale,
}

/// The requeue last sent for an object's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// When its message becomes visible.
    pub due: Timestamp,
    /// When the reconcile that asked for it began.
    pub requested_at: Timestamp,
    /// The item's version, for the conditional write that replaces it.
    pub rv: u64,
}

impl Marker {
    /// A look at `due` is already on its way: this marker's message comes no later
    /// and is still pending.
    pub fn covers(&self, now: Timestamp, due: Timestamp) -> bool {
        self.due > now && self.due <= due
    }

    /// A requeue asked for by a reconcile that began at `requested_at` is stale: a
    /// decision that began later has its own message on the way.
    pub fn supersedes(&self, requested_at: Timestamp) -> bool {
        self.requested_at > requested_at
    }
}

/// How long past its due time a marker outlives any use: its message has come and
/// gone (or died). The drift sweep removes such markers ([`outlived`]).
pub const MARKER_LINGER: Duration = Duration::from_secs(15 * 60);

/// Whether `marker`'s message is long past: the sweep may remove it.
pub fn outlived(marker: &Marker, now: Timestamp) -> bool {
    marker.due.checked_add(MARKER_LINGER).is_ok_and(|t| t < now)
}

/// Whether `pk` is a partition of requeue markers.
pub fn is_marker_partition(pk: &str) -> bool {
    pk.ends_with(MARKER_PARTITION_SUFFIX)
}

/// The suffix of a markers' partition key, after the cluster's.
const MARKER_PARTITION_SUFFIX: &str = "#requeue";

/// Where the marker of `key`'s `chain` lives.
pub fn marker_key(key: &ObjectKey, chain: Chain) -> ItemKey {
    let suffix = match chain {
        Chain::Reconcile => "",
        Chain::Autoscale => "#autoscale",
    };
    ItemKey {
        pk: format!(
            "{}{MARKER_PARTITION_SUFFIX}",
            partition_key(&key.namespace, &key.cluster)
        ),
        sk: format!("{MARKER_PREFIX}{}#{}{suffix}", key.kind, key.name),
    }
}

/// The marker item recording a requeue due at `due`, asked for at `requested_at`,
/// replacing version `rv` (0: none).
pub fn marker_item(key: &ItemKey, due: Timestamp, requested_at: Timestamp, rv: u64) -> Item {
    let expires = due
        .checked_add(MARKER_TTL)
        .unwrap_or(due)
        .as_second()
        .to_string();
    Item::from([
        (PK.to_string(), AttrValue::S(key.pk.clone())),
        (SK.to_string(), AttrValue::S(key.sk.clone())),
        (RV.to_string(), AttrValue::N((rv + 1).to_string())),
        ("due".to_string(), millis(due)),
        ("requestedAt".to_string(), millis(requested_at)),
        (TTL_ATTRIBUTE.to_string(), AttrValue::N(expires)),
    ])
}

/// A marker as stored, read leniently: anything unreadable is no marker (it then
/// covers and supersedes nothing, which costs at most an extra message).
pub fn parse_marker(item: &Item) -> Option<Marker> {
    let time = |name: &str| match item.get(name)? {
        AttrValue::N(n) => Timestamp::from_millisecond(n.parse().ok()?).ok(),
        _ => None,
    };
    Some(Marker {
        due: time("due")?,
        requested_at: time("requestedAt")?,
        rv: version_of(item),
    })
}

fn millis(t: Timestamp) -> AttrValue {
    AttrValue::N(t.as_millisecond().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::Kind;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_marker_reads_back_what_was_written() {
        let key = marker_key(
            &ObjectKey::new("team-a", "prod", Kind::Machine, "web-1"),
            Chain::Reconcile,
        );
        assert_eq!(key.pk, "team-a#prod#requeue");
        assert_eq!(key.sk, "Requeue#Machine#web-1");
        assert!(key.parse().is_none(), "a marker is no object");
        let item = marker_item(&key, at(30), at(1), 4);
        assert_eq!(
            parse_marker(&item),
            Some(Marker {
                due: at(30),
                requested_at: at(1),
                rv: 5
            })
        );
        let mut broken = item.clone();
        broken.insert("due".into(), AttrValue::S("soon".into()));
        assert_eq!(parse_marker(&broken), None);
    }

    #[test]
    fn a_pending_look_covers_later_ones_only() {
        let m = Marker {
            due: at(30),
            requested_at: at(0),
            rv: 1,
        };
        assert!(m.covers(at(10), at(30)));
        assert!(m.covers(at(10), at(300)));
        assert!(!m.covers(at(10), at(20)), "an earlier look is sent");
        assert!(
            !m.covers(at(30), at(300)),
            "a look already due is no longer pending"
        );
        assert!(!outlived(&m, at(30 + 15 * 60)));
        assert!(outlived(&m, at(31 + 15 * 60)));
        assert!(m.supersedes(at(-1)));
        assert!(!m.supersedes(at(0)), "its own message is not stale");
        let autoscale = marker_key(
            &ObjectKey::new("team-a", "prod", Kind::Cluster, "prod"),
            Chain::Autoscale,
        );
        assert_eq!(autoscale.sk, "Requeue#Cluster#prod#autoscale");
    }
}
