//! Issue 12 over the wire: what anyone writes to the table costs no instance that is not
//! theirs to lose, with moto's DynamoDB and EC2 and the adapters the functions use.
//! The same situations run in memory in shared/runtime/tests/hostile.rs; here they go
//! through the SDK, moto's tag filters and moto's index.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ec2::types::{HttpTokensState, InstanceStateName};
use capstan_aws::{Ec2Compute, EventBridgeBus};
use capstan_model::Timestamp;
use capstan_model::hash::spec_hash;
use capstan_model::item::{self, AttrValue, Item, ItemKey, Part, encode_desired, encode_observed};
use capstan_model::labels::{RESERVED_PREFIX, TAG_INSTALLATION, TAG_NAMESPACE};
use capstan_model::{ConditionStatus, Expect, Kind, Machine, MachinePhase, Object, ObjectKey};
use capstan_reconcile::conditions::INSTANCE_OWNED;
use capstan_reconcile::launch::{instance_tags, retag_tags};
use capstan_runtime::ControlPlane;
use capstan_runtime::ports::{Compute, ComputeError, Instance, Store};
use capstan_runtime::sweep::{ORPHAN_GRACE, SweepReport};
use capstan_runtime::system::OsEntropy;

use crate::support::*;

/// The drift sweep over moto's table and EC2, run as if at `now`.
async fn sweep_at(s: &Stack, now: Timestamp) -> SweepReport {
    let clients = s.rt.clients();
    let cp = ControlPlane {
        store: s.store(),
        compute: s.ec2(),
        bus: EventBridgeBus::new(
            clients.eventbridge.clone(),
            clients.sqs.clone(),
            s.rt.config.names.clone(),
        ),
        workload: capstan_runtime::NoWorkload,
        clock: Arc::new(FixedClock(now)),
        entropy: Arc::new(OsEntropy),
        installation: s.installation().to_string(),
        batch_launches: true,
    };
    cp.sweep().await.expect("the sweep runs")
}

async fn launched(ec2: &Ec2Compute, request: capstan_model::LaunchRequest) -> Instance {
    ec2.run_instances(vec![request])
        .await
        .remove(0)
        .expect("launched")
}

/// Instance id → state name, as moto reports every instance.
async fn instance_states(s: &Stack) -> BTreeMap<String, String> {
    let out =
        s.rt.clients()
            .ec2
            .describe_instances()
            .send()
            .await
            .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn running(states: &BTreeMap<String, String>, id: &str) -> bool {
    states.get(id).map(String::as_str) == Some(InstanceStateName::Running.as_str())
}

fn s(v: &str) -> AttrValue {
    AttrValue::S(v.to_string())
}

/// Issue 12, item 2: an instance carrying Capstan's tags for a Machine that does not
/// exist is collected only on positive evidence — its tags agree, its ClientToken (moto
/// reports it) is its machine-uid tag, nothing in the table mentions its uid or id, and
/// it is past the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_collected_over_the_wire_only_on_positive_evidence() {
    let stack = Stack::start("moto-orphans").await;
    let (env, ec2, inst) = (&stack.env, stack.ec2(), stack.installation().to_string());
    let tags = |machine: &str, uid: &str| capstan_tags(&inst, "team-a", machine, uid);

    let leaked = launched(&ec2, env.launch("uid-leaked", tags("gone", "uid-leaked"))).await;
    // What moto reports for ClientToken: the token RunInstances carried, as EC2 does
    // (DescribeInstances `clientToken`), so the token check runs over the wire too.
    assert_eq!(leaked.client_token.as_deref(), Some("uid-leaked"));
    let uid_mentioned = launched(&ec2, env.launch("uid-noted", tags("noted", "uid-noted"))).await;
    let id_mentioned = launched(&ec2, env.launch("uid-ided", tags("ided", "uid-ided"))).await;
    let mut partial = tags("half", "uid-half");
    partial.remove(TAG_NAMESPACE);
    let half_tagged = launched(&ec2, env.launch("uid-half", partial)).await;
    // Its kubernetes.io/cluster tag names another cluster than its capstan.dev/cluster.
    let mut crossed = tags("crossed", "uid-crossed");
    crossed.remove("kubernetes.io/cluster/demo");
    crossed.insert("kubernetes.io/cluster/other".into(), "owned".into());
    let crossed = launched(&ec2, env.launch("uid-crossed", crossed)).await;
    // Tagged as a Machine's by hand, launched with another token (another tool's).
    let by_hand = launched(&ec2, env.launch("their-token", tags("pet", "uid-pet"))).await;
    // And one launched with no ClientToken at all, straight through the SDK: the SDK
    // makes one up (ClientToken is an idempotency token), which moto, as EC2, reports.
    // Either way it is not the uid.
    let tag_spec = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .set_tags(Some(
            tags("stray", "uid-stray")
                .into_iter()
                .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build();
    let no_token = stack
        .rt
        .clients()
        .ec2
        .run_instances()
        .image_id(&env.image_id)
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .subnet_id(&env.subnets[0])
        .tag_specifications(tag_spec)
        .send()
        .await
        .expect("a launch without a token");
    let no_token = no_token.instances()[0]
        .instance_id()
        .expect("id")
        .to_string();
    let described = ec2
        .describe_instances(vec![(TAG_INSTALLATION.to_string(), inst.clone())])
        .await
        .expect("describe");
    let reported = described
        .iter()
        .find(|i| i.instance_id == no_token)
        .and_then(|i| i.client_token.clone());
    assert!(
        reported.as_ref().is_some_and(|t| t != "uid-stray"),
        "{reported:?}"
    );

    // The table mentions one uid (in an item nobody can decode) and one instance id (in
    // a Machine status of another partition that does not decode either).
    let store = stack.store();
    let notes = Item::from([
        (item::PK.to_string(), s("team-a#demo")),
        (item::SK.to_string(), s("Notes#1")),
        ("see".to_string(), AttrValue::L(vec![s("uid-noted")])),
    ]);
    store.put(notes, Expect::Absent).await.expect("written");
    let odd = Item::from([
        (item::PK.to_string(), s("team-z#other")),
        (item::SK.to_string(), s("Machine#odd#status")),
        (
            "status".to_string(),
            AttrValue::M(BTreeMap::from([
                ("instanceId".to_string(), s(&id_mentioned.instance_id)),
                ("phase".to_string(), s("Sideways")),
            ])),
        ),
    ]);
    store.put(odd, Expect::Absent).await.expect("written");

    let now = Timestamp::now();
    let early = sweep_at(&stack, now).await;
    assert!(
        early.orphans_terminated.is_empty(),
        "within the grace: {early:?}"
    );
    let later = now
        .checked_add(ORPHAN_GRACE + Duration::from_secs(60))
        .expect("a time");
    let report = sweep_at(&stack, later).await;
    assert_eq!(
        report.orphans_terminated,
        vec![leaked.instance_id.clone()],
        "{report:?}"
    );
    let states = instance_states(&stack).await;
    assert!(!running(&states, &leaked.instance_id), "{states:?}");
    for kept in [
        &uid_mentioned.instance_id,
        &id_mentioned.instance_id,
        &half_tagged.instance_id,
        &crossed.instance_id,
        &by_hand.instance_id,
        &no_token,
    ] {
        assert!(running(&states, kept), "{kept} was kept: {states:?}");
    }
}

/// A Machine of `namespace` from `o`.
fn machine_in(o: &capstan_endpoint::Observation, namespace: &str, name: &str) -> Option<Machine> {
    o.trees
        .iter()
        .filter_map(|t| t.get(Kind::Machine, name))
        .filter_map(|s| s.object.as_machine().cloned())
        .find(|m| m.metadata.namespace == namespace)
}

/// team-b's one Machine, once it runs.
async fn team_b_running(stack: &mut Stack) -> (Machine, String) {
    stack
        .apply(&[stack.env.class("team-b"), machine_set("team-b", 1)])
        .await;
    let o = run_until(&mut stack.rt, "team-b's Machine running", |o| {
        let ms: Vec<Machine> = machines(o)
            .into_iter()
            .filter(|m| m.metadata.namespace == "team-b")
            .collect();
        match ms.as_slice() {
            [m] if m.status.phase == MachinePhase::Running && o.queued == 0 => None,
            other => Some(vec![format!("team-b's Machines: {other:?}")]),
        }
    })
    .await;
    let m = machines(&o)
        .into_iter()
        .find(|m| m.metadata.namespace == "team-b")
        .expect("team-b's Machine");
    let id = m.status.instance_id.clone().expect("its instance");
    (m, id)
}

/// `theirs` as another namespace's raw writer would copy it: renamed into `namespace`,
/// without owners, keeping the instance id and the machine uid.
fn forged(theirs: &Machine, namespace: &str, name: &str) -> Machine {
    let mut m = theirs.clone();
    m.metadata.namespace = namespace.into();
    m.metadata.name = name.into();
    m.metadata.owner_references.clear();
    m.metadata.labels.clear();
    m
}

/// Issue 12, item 3: a forged observed item in team-a naming team-b's instance (and
/// its Machine's uid) does not get it terminated, retagged or adopted; the forging
/// Machine says `InstanceOwned=False`. A forged Machine with team-b's uid and a launch
/// "in flight" finds nothing to adopt by tag. And for a Machine whose launch is
/// unrecorded, recovery by tag considers every instance carrying its tags and adopts
/// the one launched with its ClientToken, not a look-alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_item_costs_another_namespace_nothing_over_the_wire() {
    let mut stack = Stack::start("moto-scoped").await;
    let (theirs, their_id) = team_b_running(&mut stack).await;
    let store = stack.store();

    // Observed only: the forged Machine looks deleted, so its reconciler would
    // terminate "its" instance.
    let borrowed = Object::Machine(forged(&theirs, "team-a", "borrowed"));
    store
        .put(encode_observed(&borrowed, "forged", 1), Expect::Absent)
        .await
        .expect("the forged write");
    // Desired and observed, launch requested but unrecorded: recovery looks by tag.
    let mut squatter = forged(&theirs, "team-a", "squatter");
    // Its launch spec written out (team-a has no class its launchRef resolves against).
    squatter.spec.launch = theirs.spec.launch().cloned().expect("team-b's launch spec");
    squatter.spec.launch_ref = None;
    squatter.status = Default::default();
    squatter.status.phase = MachinePhase::Provisioning;
    // Requested longer ago than DescribeInstances' grace: finding nothing carrying its
    // tags, it launches its own (with team-b's uid as ClientToken: EC2 would answer
    // IdempotentParameterMismatch and fail it; moto, which ignores tokens, launches).
    squatter.status.launch_requested_at =
        Timestamp::now().checked_sub(Duration::from_secs(180)).ok();
    let squatter = Object::Machine(squatter);
    store
        .put(encode_desired(&squatter, 1), Expect::Absent)
        .await
        .expect("the forged desired item");
    store
        .put(
            encode_observed(&squatter, &spec_hash(&squatter.spec_json()), 1),
            Expect::Absent,
        )
        .await
        .expect("the forged observed item");

    let o = run_until(&mut stack.rt, "the forged Machines reconciled", |o| {
        let owned = machine_in(o, "team-a", "borrowed")
            .and_then(|m| m.status.conditions.get(INSTANCE_OWNED).cloned());
        let squatter = machine_in(o, "team-a", "squatter").map(|m| m.status);
        let settled = squatter
            .as_ref()
            .is_some_and(|s| s.instance_id.is_some() || s.phase == MachinePhase::Failed);
        match (&owned, settled) {
            (Some(c), true) if c.status == ConditionStatus::False && o.queued == 0 => None,
            _ => Some(vec![format!(
                "borrowed InstanceOwned {owned:?}, squatter {squatter:?}, {} queued",
                o.queued
            )]),
        }
    })
    .await;
    let owned = machine_in(&o, "team-a", "borrowed")
        .and_then(|m| m.status.conditions.get(INSTANCE_OWNED).cloned())
        .expect("InstanceOwned");
    assert_eq!(owned.reason, "InstanceNotOwned", "{owned:?}");
    let squatter = machine_in(&o, "team-a", "squatter").expect("the squatter");
    assert_ne!(
        squatter.status.instance_id.as_deref(),
        Some(their_id.as_str()),
        "nothing adopted by a forged uid"
    );

    // The sweep, then deleting the squatter: it tears down what it owns, not theirs.
    stack.rt.sweep().await;
    store
        .delete(
            &ItemKey::of(
                &ObjectKey::new("team-a", "demo", Kind::Machine, "squatter"),
                Part::Desired,
            ),
            Expect::Any,
        )
        .await
        .expect("deleted");
    let o = run_until(&mut stack.rt, "the squatter deleted", |o| {
        let left = machine_in(o, "team-a", "squatter").is_some();
        (left || o.queued > 0).then(|| vec![format!("squatter left: {left}, {} queued", o.queued)])
    })
    .await;
    let states = instance_states(&stack).await;
    assert!(running(&states, &their_id), "{states:?}");
    let still = machine_in(&o, "team-b", &theirs.metadata.name).expect("team-b's Machine");
    assert_eq!(still.status.instance_id.as_deref(), Some(their_id.as_str()));
    assert_eq!(still.status.phase, MachinePhase::Running);
    let tags = &o
        .instances
        .iter()
        .find(|i| i.instance_id == their_id)
        .expect("theirs")
        .tags;
    assert_eq!(
        tags,
        &instance_tags(&theirs, stack.installation()),
        "not retagged"
    );

    // Recovery considers every match: a look-alike carrying every identity tag of a
    // Machine whose launch is unrecorded, launched first with another token, and the
    // Machine's own launch (its uid as ClientToken). The Machine adopts its own.
    let ec2 = stack.ec2();
    let mut pending = forged(&theirs, "team-b", "recovering");
    pending.metadata.uid = Some("uid-recovering".into());
    pending.status = Default::default();
    pending.status.phase = MachinePhase::Provisioning;
    pending.status.launch_requested_at = Some(Timestamp::now());
    let inst = stack.installation().to_string();
    let look_alike = launched(
        &ec2,
        stack
            .env
            .launch("not-its-token", instance_tags(&pending, &inst)),
    )
    .await;
    let own = launched(
        &ec2,
        stack
            .env
            .launch("uid-recovering", instance_tags(&pending, &inst)),
    )
    .await;
    let pending = Object::Machine(pending);
    store
        .put(encode_desired(&pending, 1), Expect::Absent)
        .await
        .expect("written");
    store
        .put(
            encode_observed(&pending, &spec_hash(&pending.spec_json()), 1),
            Expect::Absent,
        )
        .await
        .expect("written");
    let o = run_until(&mut stack.rt, "recovery by tag", |o| {
        let m = machine_in(o, "team-b", "recovering");
        match m.as_ref().and_then(|m| m.status.instance_id.clone()) {
            Some(_) if o.queued == 0 => None,
            _ => Some(vec![format!("recovering: {:?}", m.map(|m| m.status))]),
        }
    })
    .await;
    let recovered = machine_in(&o, "team-b", "recovering").expect("recovering");
    assert_eq!(
        recovered.status.instance_id.as_deref(),
        Some(own.instance_id.as_str()),
        "the instance launched with its token, not the look-alike"
    );
    let states = instance_states(&stack).await;
    for id in [&their_id, &look_alike.instance_id, &own.instance_id] {
        assert!(running(&states, id), "{id}: {states:?}");
    }

    // Recording a state considers every Machine the instance index names: two do
    // (team-b's and the forged one in team-a). Terminated behind Capstan's back, the
    // instance's state goes to team-b's Machine, whose tags it carries, and not to
    // the forged one.
    let before = machine_in(&o, "team-a", "borrowed").expect("the forged item stays");
    stack
        .rt
        .clients()
        .ec2
        .terminate_instances()
        .instance_ids(&their_id)
        .send()
        .await
        .expect("TerminateInstances behind Capstan's back");
    let name = theirs.metadata.name.clone();
    let o = run_until(&mut stack.rt, "team-b's Machine learns", |o| {
        let m = machine_in(o, "team-b", &name);
        match m
            .as_ref()
            .map(|m| (m.status.phase, m.status.failure_reason.as_deref()))
        {
            Some((MachinePhase::Failed, Some("InstanceTerminated"))) => None,
            other => Some(vec![format!("team-b's Machine: {other:?}")]),
        }
    })
    .await;
    let borrowed = machine_in(&o, "team-a", "borrowed").expect("the forged item stays");
    assert_eq!(
        borrowed.status.phase, before.status.phase,
        "nothing recorded on it"
    );
    assert_eq!(borrowed.status.instance_state, before.status.instance_state);
    assert_eq!(borrowed.status.failure_reason, None);
}

/// Issue 12, item 5, the runtime's side: RunInstances as Capstan issues it asks for
/// IMDSv2 (`HttpTokens=required`, hop limit 1) and an encrypted root volume, and moto
/// shows both (DescribeInstances' MetadataOptions, DescribeVolumes' Encrypted); the
/// calls on an existing instance never send a `capstan.dev/` key, and the adapter
/// refuses them for an instance without the installation tag, as IAM would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_launch_with_imdsv2_and_encrypted_volumes_and_guards_hold_over_the_wire() {
    let mut stack = Stack::start("moto-defaults").await;
    let (theirs, id) = team_b_running(&mut stack).await;
    let ec2 = stack.rt.clients().ec2.clone();

    let out = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("DescribeInstances");
    let instance = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .expect("the instance");
    let metadata = instance.metadata_options().expect("MetadataOptions");
    assert_eq!(metadata.http_tokens(), Some(&HttpTokensState::Required));
    assert_eq!(metadata.http_put_response_hop_limit(), Some(1));
    let volumes: Vec<String> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|b| b.ebs()?.volume_id().map(str::to_string))
        .collect();
    assert!(!volumes.is_empty(), "a root volume: {instance:?}");
    let described = ec2
        .describe_volumes()
        .set_volume_ids(Some(volumes.clone()))
        .send()
        .await
        .expect("DescribeVolumes");
    assert_eq!(described.volumes().len(), volumes.len());
    for v in described.volumes() {
        assert_eq!(v.encrypted(), Some(true), "{v:?}");
        let on = v
            .tags()
            .iter()
            .any(|t| t.key() == Some(TAG_INSTALLATION) && t.value() == Some(stack.installation()));
        assert!(on, "the volume carries the installation tag: {v:?}");
    }

    // In-place retagging sends none of Capstan's keys: the guard is never sent again.
    let retag = retag_tags(&theirs, stack.installation());
    assert!(!retag.is_empty());
    assert!(
        retag.keys().all(|k| !k.starts_with(RESERVED_PREFIX)),
        "{retag:?}"
    );
    let adapter = stack.ec2();
    let guard = (
        TAG_INSTALLATION.to_string(),
        stack.installation().to_string(),
    );
    adapter
        .create_tags(vec![id.clone()], retag, guard.clone())
        .await
        .expect("retagging in place");
    // An instance without the installation tag: refused, before anything is sent.
    let foreign = launched(
        &adapter,
        stack
            .env
            .launch("", BTreeMap::from([("team".to_string(), "x".to_string())])),
    )
    .await;
    let unauthorized = |r: Result<(), ComputeError>| matches!(r, Err(ComputeError::Invalid { ref code, .. }) if code == "UnauthorizedOperation");
    let team = BTreeMap::from([("team".to_string(), "b".to_string())]);
    assert!(unauthorized(
        adapter
            .create_tags(vec![foreign.instance_id.clone()], team, guard.clone())
            .await
    ));
    assert!(unauthorized(
        adapter
            .terminate_instances(vec![foreign.instance_id.clone()], guard.clone())
            .await
            .map(|_| ())
    ));
    // Nor may a call set the guard key, not even to its own value.
    let guard_again = BTreeMap::from([guard.clone()]);
    assert!(unauthorized(
        adapter
            .create_tags(vec![id.clone()], guard_again, guard.clone())
            .await
    ));
    let states = instance_states(&stack).await;
    assert!(running(&states, &foreign.instance_id), "{states:?}");
    assert!(running(&states, &id), "{states:?}");
}
