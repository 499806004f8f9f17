//! Launch batching: Machines that need a launch in the same handler invocation, and
//! whose RunInstances requests are identical but for the per-Machine tags and token,
//! share one RunInstances with MinCount = 1 and MaxCount = the number of members.
//!
//! # Expected flow
//! The Machine reconciler decides each Machine of its SQS batch as before
//! ([`crate::machine::decide`]); the launches it would make one by one are handed to
//! [`plan_batches`], which groups the identical ones ([`group_key`]), sorts each group's
//! members by uid and derives the batch's ClientToken ([`batch_token`]). The driver then
//! records every member, in uid order, with the token and its index ([`join`]: the
//! `status.launchBatch` written with `Provisioning`, conditionally, before the call),
//! makes one RunInstances ([`batch_request`]: the shared tags plus
//! `capstan.dev/launch-batch = token`), and gives member *i* the instance whose
//! AmiLaunchIndex is *i* ([`assign`]).
//!
//! # Guarantees
//! - At most one instance per Machine. Every member records the token and its index
//!   before the call, so a crash or timeout at any point leaves each member
//!   `LaunchUnrecorded`: the next pass finds the batch's instances by the batch tag
//!   (DescribeInstances) and takes the one at its index, or, when none shows after
//!   [`crate::machine::DESCRIBE_GRACE`], launches again. The batch call itself is never
//!   repeated blind.
//! - Two invocations never share a token: the token mixes the invocation's entropy
//!   with the sorted member uids, and a member's record is a conditional write, so a
//!   Machine is a member of at most one batch that was called. (Derived from the uids
//!   alone, two invocations that decided from the same snapshot and each won a
//!   different member would send the same token and parameters, and EC2 would hand
//!   both the same reservation.)
//! - Indexes are dense: the member recorded *k*-th gets index *k*, and the call asks
//!   for exactly as many instances as members were recorded, so every instance of the
//!   call has a member that records it.
//! - Ownership: an instance is a batched Machine's when it carries the installation,
//!   namespace and cluster tags and the batch tag the Machine records, and its
//!   AmiLaunchIndex is the index the Machine records
//!   ([`crate::launch::ownership_tags`], [`crate::launch::owns_launch_index`]): no
//!   CreateTags per instance after the launch (that would be one more mutating call
//!   per Machine, against CreateTags' own bucket of 100 refilled at 10/s).
//!
//! # Errors
//! One outcome for the call, applied to every member: capacity errors send each
//! member to its next offering, throttling backs them off together (the jitter is
//! drawn from the token, so they come back in one batch), a timeout leaves them to
//! recovery. Fewer instances than members (MinCount = 1): the members past the last
//! index go back to Pending at once and launch in a later batch or alone.

use std::collections::BTreeMap;

use capstan_model::labels::{TAG_LAUNCH_BATCH, TAG_MACHINE, TAG_MACHINE_UID};
use capstan_model::{LaunchBatchMember, LaunchRequest, Machine};

/// The most members one call carries: EC2's RunInstances resource bucket holds 1,000
/// instances, so a larger call could never be served.
pub const MAX_BATCH: usize = 1000;

/// One launch a Machine's decision asked for, offered for batching.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub uid: String,
    pub request: LaunchRequest,
}

/// Launches that share one call: `members` are indexes into the candidates, sorted by
/// uid; member *k* of those recorded gets the instance with AmiLaunchIndex *k*.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub token: String,
    pub members: Vec<usize>,
}

/// What makes two launches identical: the request without its per-Machine parts
/// (the token, the Name, machine and machine-uid tags), hashed.
pub fn group_key(request: &LaunchRequest) -> String {
    let shared = shared_request(request);
    let value = serde_json::json!({
        "imageId": shared.image_id,
        "instanceType": shared.instance_type,
        "subnetId": shared.subnet_id,
        "securityGroups": shared.security_groups,
        "instanceProfile": shared.instance_profile,
        "rootVolume": shared.root_volume,
        "market": shared.market,
        "metadataOptions": shared.metadata_options,
        "tags": shared.tags,
        "userData": shared.user_data,
    });
    capstan_model::hash::short_hash(&value, 32)
}

/// The request without its per-Machine parts: no token, and none of the tags that
/// name one Machine (`Name` when it is the Machine's name, machine, machine-uid).
fn shared_request(request: &LaunchRequest) -> LaunchRequest {
    let mut shared = request.clone();
    shared.client_token.clear();
    let machine = shared.tags.remove(TAG_MACHINE);
    shared.tags.remove(TAG_MACHINE_UID);
    if machine.is_some() && shared.tags.get("Name") == machine.as_ref() {
        shared.tags.remove("Name");
    }
    shared
}

/// The batch's ClientToken: `lb-` and 61 hex characters of the SHA-256 of the sorted
/// member uids, the group and the invocation's `entropy` (64 characters, EC2's limit).
pub fn batch_token(sorted_uids: &[&str], group: &str, entropy: u128) -> String {
    let value = serde_json::json!({
        "members": sorted_uids,
        "group": group,
        "entropy": entropy.to_string(),
    });
    format!("lb-{}", capstan_model::hash::short_hash(&value, 61))
}

/// Groups identical launches into batches of at most [`MAX_BATCH`], members sorted by
/// uid. A launch with no identical partner is not batched (it goes alone, with the
/// Machine's uid as its token, as without batching). Deterministic: the same
/// candidates and entropy give the same batches.
pub fn plan_batches(candidates: &[Candidate], entropy: u128) -> Vec<Batch> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in candidates.iter().enumerate() {
        if c.uid.is_empty() {
            continue;
        }
        groups.entry(group_key(&c.request)).or_default().push(i);
    }
    let mut batches = Vec::new();
    for (group, mut members) in groups {
        members.sort_by(|a, b| candidates[*a].uid.cmp(&candidates[*b].uid));
        members.dedup_by(|a, b| candidates[*a].uid == candidates[*b].uid);
        for chunk in members.chunks(MAX_BATCH) {
            if chunk.len() < 2 {
                continue;
            }
            let uids: Vec<&str> = chunk.iter().map(|i| candidates[*i].uid.as_str()).collect();
            batches.push(Batch {
                token: batch_token(&uids, &group, entropy),
                members: chunk.to_vec(),
            });
        }
    }
    batches
}

/// The Machine as a member of batch `token` at `index`, before the call.
pub fn join(m: &Machine, token: &str, index: u32) -> Machine {
    let mut m = m.clone();
    m.status.launch_batch = Some(LaunchBatchMember {
        token: token.to_string(),
        index,
    });
    m
}

/// The one RunInstances of a batch: any member's request without its per-Machine
/// parts, with the batch's token and the batch tag on every instance.
pub fn batch_request(member_request: &LaunchRequest, token: &str) -> LaunchRequest {
    let mut request = shared_request(member_request);
    request.client_token = token.to_string();
    request
        .tags
        .insert(TAG_LAUNCH_BATCH.to_string(), token.to_string());
    request
}

/// Which of `launch_indexes` (the AmiLaunchIndex of each instance the call returned)
/// is member `k`'s, for `members` members: member `k` gets the instance whose index is
/// `k`, and no other. None for a member past the instances EC2 started.
pub fn assign(members: usize, launch_indexes: &[Option<u32>]) -> Vec<Option<usize>> {
    (0..members)
        .map(|k| {
            let k = u32::try_from(k).ok()?;
            launch_indexes.iter().position(|i| *i == Some(k))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(machine: &str, uid: &str, instance_type: &str) -> LaunchRequest {
        let mut tags = BTreeMap::new();
        tags.insert(TAG_MACHINE.to_string(), machine.to_string());
        tags.insert(TAG_MACHINE_UID.to_string(), uid.to_string());
        tags.insert("Name".to_string(), machine.to_string());
        tags.insert("team".to_string(), "a".to_string());
        LaunchRequest {
            client_token: uid.to_string(),
            image_id: "ami-1".into(),
            instance_type: instance_type.into(),
            subnet_id: "subnet-a".into(),
            security_groups: vec![],
            instance_profile: None,
            root_volume: Default::default(),
            market: Default::default(),
            metadata_options: Default::default(),
            tags,
            user_data: None,
        }
    }

    fn candidate(machine: &str, uid: &str, instance_type: &str) -> Candidate {
        Candidate {
            uid: uid.into(),
            request: request(machine, uid, instance_type),
        }
    }

    #[test]
    fn identical_launches_share_a_batch_sorted_by_uid() {
        let c = vec![
            candidate("web-2", "u3", "m5.large"),
            candidate("web-0", "u1", "m5.large"),
            candidate("web-1", "u2", "m5.large"),
            candidate("db-0", "u9", "r5.large"),
        ];
        let batches = plan_batches(&c, 7);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].members, vec![1, 2, 0]);
        assert!(batches[0].token.len() <= 64);
        assert_eq!(plan_batches(&c, 7), batches, "deterministic");
        assert_ne!(plan_batches(&c, 8)[0].token, batches[0].token);
    }

    #[test]
    fn a_launch_without_a_partner_goes_alone() {
        let c = vec![
            candidate("web-0", "u1", "m5.large"),
            candidate("web-1", "u2", "c5.large"),
        ];
        assert!(plan_batches(&c, 0).is_empty());
    }

    #[test]
    fn the_batch_request_keeps_shared_tags_and_drops_the_machines() {
        let r = batch_request(&request("web-0", "u1", "m5.large"), "lb-x");
        assert_eq!(r.client_token, "lb-x");
        assert_eq!(
            r.tags.get(TAG_LAUNCH_BATCH).map(String::as_str),
            Some("lb-x")
        );
        assert_eq!(r.tags.get("team").map(String::as_str), Some("a"));
        assert!(!r.tags.contains_key(TAG_MACHINE));
        assert!(!r.tags.contains_key(TAG_MACHINE_UID));
        assert!(!r.tags.contains_key("Name"));
    }

    #[test]
    fn member_k_gets_launch_index_k_and_the_rest_nothing() {
        let got = assign(3, &[Some(1), Some(0)]);
        assert_eq!(got, vec![Some(1), Some(0), None]);
    }
}
