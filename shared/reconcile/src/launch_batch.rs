//! Launch batching: Machines that need a launch in the same handler invocation, and
//! whose RunInstances requests are identical but for the per-Machine tags and token,
//! share one RunInstances with MinCount = 1 and MaxCount = the number of members.
//!
//! # Expected flow
//! The Machine reconciler decides each Machine of its SQS batch as before
//! ([`crate::machine::decide`]); the launches it would make one by one are handed to
//! [`plan_batches`], which groups the identical ones ([`group_key`]), sorts each group's
//! members by uid and draws the batch's salt ([`batch_salt`]). The driver then seals
//! the members in that order ([`seal`]: the ClientToken is the salted Merkle root of
//! their namespace, name and uid, and each gets its path to the root), records every
//! member with the token, its index and its path ([`join`]: the `status.launchBatch`
//! written with `Provisioning`, conditionally, before the call), makes one
//! RunInstances ([`batch_request`]: the shared tags plus
//! `capstan.dev/launch-batch = token`), and gives member *i* the instance whose
//! AmiLaunchIndex is *i* ([`assign`]). A member whose record conflicts drops out and
//! the rest are sealed and recorded again, so the token always commits to exactly the
//! members the call is made for.
//!
//! # Guarantees
//! - At most one instance per Machine. Every member records the token and its index
//!   before the call, so a crash or timeout at any point leaves each member
//!   `LaunchUnrecorded`: the next pass finds the batch's instances by the batch tag
//!   (DescribeInstances) and takes the one at its index, or, when none shows after
//!   [`crate::machine::DESCRIBE_GRACE`], launches again. The batch call itself is never
//!   repeated blind.
//! - Two invocations never share a token: the salt mixes the invocation's entropy
//!   with the sorted member uids, and a member's record is a conditional write, so a
//!   Machine is a member of at most one batch that was called. (Derived from the uids
//!   alone, two invocations that decided from the same snapshot and each won a
//!   different member would send the same token and parameters, and EC2 would hand
//!   both the same reservation.)
//! - Indexes are dense: the call is made only once every member of the last sealing
//!   is recorded, for exactly that many instances, so every instance of the call has
//!   the member at its index.
//! - Ownership: an instance is a batched Machine's when it carries the installation,
//!   namespace and cluster tags and the batch tag the Machine records, its
//!   AmiLaunchIndex is the index the Machine records, and the Machine's path proves
//!   that the token commits to this Machine (namespace, name, uid) at that index
//!   ([`crate::launch::ownership_tags`], [`crate::launch::owns_launch_index`],
//!   [`proves_membership`]). Everything the record holds can be copied by anyone who
//!   can write the table; a copy under another name (or uid) hashes to another leaf
//!   and proves nothing, and a path to that leaf would need a SHA-256 second
//!   preimage. No CreateTags per instance after the launch (that would be one more
//!   mutating call per Machine, against CreateTags' own bucket of 100 refilled at
//!   10/s).
//!
//! # Errors
//! One outcome for the call, applied to every member: capacity errors send each
//! member to its next offering, throttling backs them off together (the jitter is
//! drawn from the token, so they come back in one batch), a timeout leaves them to
//! recovery. Fewer instances than members (MinCount = 1): the members past the last
//! index go back to Pending at once and launch in a later batch or alone.

use std::collections::BTreeMap;

use capstan_model::hash::short_hash;
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
    /// What makes this batch's token unlike any other invocation's ([`batch_salt`]).
    pub salt: String,
    pub members: Vec<usize>,
}

/// The most levels a member's path may have: a tree of 2^20 leaves, far past
/// [`MAX_BATCH`]. A longer path in the table is another writer's and proves nothing.
const MAX_PROOF: usize = 20;

/// Hex characters kept of each hash in the tree (128 bits).
const NODE_HEX: usize = 32;

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

/// The batch's salt: a hash of the sorted member uids, the group and the invocation's
/// `entropy`, so no two invocations (or groups) ever seal to the same token.
pub fn batch_salt(sorted_uids: &[&str], group: &str, entropy: u128) -> String {
    let value = serde_json::json!({
        "members": sorted_uids,
        "group": group,
        "entropy": entropy.to_string(),
    });
    short_hash(&value, NODE_HEX)
}

/// A member's leaf: its namespace, name and uid, the identity the non-batched
/// ownership tags carry one by one.
pub fn member_leaf(m: &Machine) -> String {
    let meta = &m.metadata;
    short_hash(
        &("member", &meta.namespace, &meta.name, meta.uid.as_deref()),
        NODE_HEX,
    )
}

fn node(left: &str, right: &str) -> String {
    short_hash(&("node", left, right), NODE_HEX)
}

/// The leaf that fills the tree up to a power of two: no member's leaf is ever it.
fn empty_leaf() -> String {
    short_hash(&("empty",), NODE_HEX)
}

/// The batch's ClientToken from its salt and root: `lb-` and 61 hex characters (64
/// characters, EC2's limit).
fn token_of(salt: &str, root: &str) -> String {
    format!("lb-{}", short_hash(&("batch", salt, root), 61))
}

/// A batch sealed for its members in launch order: the token, and each member's path.
#[derive(Clone, Debug, PartialEq)]
pub struct Sealed {
    pub token: String,
    pub proofs: Vec<Vec<String>>,
}

/// Seals `leaves` (the members' [`member_leaf`]s, in launch order) under `salt`: the
/// Merkle tree over them, padded with [`empty_leaf`] to a power of two.
pub fn seal(salt: &str, leaves: &[String]) -> Sealed {
    let width = leaves.len().max(1).next_power_of_two();
    let mut level: Vec<String> = leaves.to_vec();
    level.resize(width, empty_leaf());
    let mut proofs = vec![Vec::new(); leaves.len()];
    let mut depth = 0;
    while level.len() > 1 {
        for (k, proof) in proofs.iter_mut().enumerate() {
            proof.push(level[(k >> depth) ^ 1].clone());
        }
        level = level.chunks(2).map(|p| node(&p[0], &p[1])).collect();
        depth += 1;
    }
    let root = level.pop().unwrap_or_else(empty_leaf);
    Sealed {
        token: token_of(salt, &root),
        proofs,
    }
}

/// Whether `m`'s `status.launchBatch` proves that its token was sealed with this
/// Machine (namespace, name, uid) at the recorded index. True for a Machine launched
/// alone (its tags prove it). A record another writer copied, forged or garbled
/// proves nothing.
pub fn proves_membership(m: &Machine) -> bool {
    let Some(batch) = &m.status.launch_batch else {
        return true;
    };
    if m.metadata.uid.as_deref().is_none_or(str::is_empty)
        || batch.proof.len() > MAX_PROOF
        || batch
            .index
            .checked_shr(batch.proof.len() as u32)
            .unwrap_or(0)
            != 0
    {
        return false;
    }
    let mut hash = member_leaf(m);
    for (depth, sibling) in batch.proof.iter().enumerate() {
        hash = if (batch.index >> depth) & 1 == 0 {
            node(&hash, sibling)
        } else {
            node(sibling, &hash)
        };
    }
    token_of(&batch.salt, &hash) == batch.token
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
                salt: batch_salt(&uids, &group, entropy),
                members: chunk.to_vec(),
            });
        }
    }
    batches
}

/// The Machine as member `index` of the sealed batch, before the call.
pub fn join(m: &Machine, salt: &str, sealed: &Sealed, index: usize) -> Machine {
    let mut m = m.clone();
    m.status.launch_batch = Some(LaunchBatchMember {
        token: sealed.token.clone(),
        index: u32::try_from(index).unwrap_or(u32::MAX),
        salt: salt.to_string(),
        proof: sealed.proofs.get(index).cloned().unwrap_or_default(),
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
    use std::collections::BTreeSet;

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
        assert_eq!(plan_batches(&c, 7), batches, "deterministic");
        assert_ne!(plan_batches(&c, 8)[0].salt, batches[0].salt);
    }

    fn machine(name: &str, uid: &str) -> Machine {
        let mut m = Machine::default();
        m.metadata.namespace = "default".into();
        m.metadata.name = name.into();
        m.metadata.uid = Some(uid.into());
        m
    }

    fn members(n: usize) -> Vec<Machine> {
        (0..n)
            .map(|k| machine(&format!("web-{k}"), &format!("u{k}")))
            .collect()
    }

    fn sealed_members(n: usize, salt: &str) -> Vec<Machine> {
        let ms = members(n);
        let leaves: Vec<String> = ms.iter().map(member_leaf).collect();
        let sealed = seal(salt, &leaves);
        assert!(sealed.token.len() <= 64, "EC2's ClientToken limit");
        ms.iter()
            .enumerate()
            .map(|(k, m)| join(m, salt, &sealed, k))
            .collect()
    }

    #[test]
    fn every_member_of_any_size_of_batch_proves_its_own_slot() {
        for n in 1..=17 {
            let ms = sealed_members(n, "s");
            let tokens: BTreeSet<_> = ms
                .iter()
                .map(|m| m.status.launch_batch.clone().map(|b| b.token))
                .collect();
            assert_eq!(tokens.len(), 1, "one token for the batch of {n}");
            for m in &ms {
                assert!(proves_membership(m), "member {} of {n}", m.metadata.name);
            }
        }
    }

    #[test]
    fn a_copy_under_another_name_or_uid_proves_nothing() {
        let ms = sealed_members(5, "s");
        let mut renamed = ms[2].clone();
        renamed.metadata.name = "web-2-copy".into();
        assert!(!proves_membership(&renamed));
        let mut other_uid = ms[2].clone();
        other_uid.metadata.uid = Some("u9".into());
        assert!(!proves_membership(&other_uid));
        let mut moved = ms[2].clone();
        moved.metadata.namespace = "team-b".into();
        assert!(!proves_membership(&moved));
    }

    #[test]
    fn a_member_claiming_anothers_index_or_batch_proves_nothing() {
        let ms = sealed_members(5, "s");
        // Member 3 takes member 2's index, then its whole record.
        let mut m = ms[3].clone();
        if let Some(b) = m.status.launch_batch.as_mut() {
            b.index = 2;
        }
        assert!(!proves_membership(&m));
        let mut m = ms[3].clone();
        m.status.launch_batch = ms[2].status.launch_batch.clone();
        assert!(!proves_membership(&m));
        // An index past the path's width, an overlong path, another salt.
        let mut m = ms[3].clone();
        if let Some(b) = m.status.launch_batch.as_mut() {
            b.index += 8;
        }
        assert!(!proves_membership(&m));
        let mut m = ms[3].clone();
        if let Some(b) = m.status.launch_batch.as_mut() {
            b.proof = vec![String::new(); 64];
        }
        assert!(!proves_membership(&m));
        let mut m = ms[3].clone();
        if let Some(b) = m.status.launch_batch.as_mut() {
            b.salt = "t".into();
        }
        assert!(!proves_membership(&m));
        // A Machine without a uid proves nothing; one launched alone needs no proof.
        let mut m = ms[3].clone();
        m.metadata.uid = None;
        assert!(!proves_membership(&m));
        assert!(proves_membership(&machine("solo", "u7")));
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
