mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::{InstanceState, Market, MetadataOptions, RootVolume};
use capstan_runtime::{Compute, ComputeError, LaunchRequest};
use capstan_sim::{Ec2Config, Ec2Op, ManualClock, SimEc2};
use common::{block_on, clock, start};
use serde_json::Value;

const IMAGE: &str = "ami-0abcdef1234567890";
const SUBNET_A: &str = "subnet-0a1b2c3d4e5f60001";
const SUBNET_B: &str = "subnet-0a1b2c3d4e5f60002";
const GUARD: (&str, &str) = ("capstan.dev/installation", "test");

fn guard() -> (String, String) {
    (GUARD.0.into(), GUARD.1.into())
}

fn launch(token: &str) -> LaunchRequest {
    LaunchRequest {
        client_token: token.into(),
        image_id: IMAGE.into(),
        instance_type: "m7i.large".into(),
        subnet_id: SUBNET_A.into(),
        security_groups: vec!["sg-0123456789abcdef0".into()],
        instance_profile: None,
        root_volume: RootVolume::default(),
        market: Market::default(),
        metadata_options: MetadataOptions::default(),
        tags: BTreeMap::from([
            (GUARD.0.to_string(), GUARD.1.to_string()),
            ("capstan.dev/machine-uid".to_string(), token.to_string()),
        ]),
        user_data: None,
    }
}

fn ec2() -> (ManualClock, SimEc2) {
    let (clock, shared) = clock();
    (clock, SimEc2::new(Ec2Config::default(), shared))
}

fn run_one(ec2: &SimEc2, req: LaunchRequest) -> Result<capstan_runtime::Instance, ComputeError> {
    block_on(ec2.run_instances(vec![req])).remove(0)
}

fn states(events: &[capstan_runtime::BusEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.detail["instance-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e.detail["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_repeated_client_token_returns_the_first_launch_even_after_termination() {
    let (clock, ec2) = ec2();
    let first = run_one(&ec2, launch("uid-1")).unwrap();
    assert_eq!(first.state, InstanceState::Pending);
    assert!(first.instance_id.starts_with("i-0") && first.instance_id.len() == 19);

    let again = run_one(&ec2, launch("uid-1")).unwrap();
    assert_eq!(again.instance_id, first.instance_id);

    clock.advance(Duration::from_secs(3));
    let states =
        block_on(ec2.terminate_instances(vec![first.instance_id.clone()], guard())).unwrap();
    assert_eq!(
        states,
        vec![(first.instance_id.clone(), InstanceState::ShuttingDown)]
    );
    clock.advance(Duration::from_secs(2));

    let after = run_one(&ec2, launch("uid-1")).unwrap();
    assert_eq!(after.instance_id, first.instance_id);
    assert_eq!(after.state, InstanceState::Terminated);
    assert_eq!(ec2.launched_total(), 1);
    assert_eq!(ec2.instances().len(), 1);
    assert_eq!(ec2.calls().run_instances, 3);
}

#[test]
fn the_same_token_with_other_parameters_is_a_mismatch() {
    let (_, ec2) = ec2();
    run_one(&ec2, launch("uid-1")).unwrap();
    let mut other = launch("uid-1");
    other.instance_type = "m7i.xlarge".into();
    assert_eq!(
        run_one(&ec2, other).unwrap_err().code(),
        "IdempotentParameterMismatch"
    );
    assert_eq!(ec2.launched_total(), 1);
}

#[test]
fn launches_in_one_call_are_independent() {
    let (_, ec2) = ec2();
    let mut bad = launch("uid-2");
    bad.image_id = "ami-00000000000000000".into();
    let results = block_on(ec2.run_instances(vec![launch("uid-1"), bad, launch("uid-3")]));
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    assert_eq!(ec2.launched_total(), 2);
    // One RunInstances request per launch, as the EC2 adapter sends them.
    assert_eq!(ec2.calls().run_instances, 3);
}

#[test]
fn invalid_launches_get_ec2_error_codes() {
    let (_, ec2) = ec2();
    let mut image = launch("a");
    image.image_id = "ami-00000000000000000".into();
    let mut subnet = launch("b");
    subnet.subnet_id = "subnet-00000000000000000".into();
    let mut instance_type = launch("c");
    instance_type.instance_type = "m7i.huge".into();
    let mut reserved_tag = launch("d");
    reserved_tag.tags.insert("aws:owner".into(), "me".into());
    let codes: Vec<String> =
        block_on(ec2.run_instances(vec![image, subnet, instance_type, reserved_tag]))
            .into_iter()
            .map(|r| r.unwrap_err())
            .inspect(|e| assert!(matches!(e, ComputeError::Invalid { .. }) && !e.is_retryable()))
            .map(|e| e.code().to_string())
            .collect();
    assert_eq!(
        codes,
        [
            "InvalidAMIID.NotFound",
            "InvalidSubnetID.NotFound",
            "InvalidParameterValue",
            "InvalidParameterValue"
        ]
    );
    assert!(ec2.instances().is_empty());
    assert!(ec2.take_events().is_empty());
}

#[test]
fn terminate_refuses_the_whole_request_when_one_instance_lacks_the_guard_tag() {
    let (_, ec2) = ec2();
    let ours = run_one(&ec2, launch("uid-1")).unwrap();
    let foreign = ec2.launch_foreign(SUBNET_B, [("team", "other")]).unwrap();
    ec2.take_events();
    let err = block_on(ec2.terminate_instances(
        vec![ours.instance_id.clone(), foreign.instance_id.clone()],
        guard(),
    ))
    .unwrap_err();
    assert_eq!(err.code(), "UnauthorizedOperation");
    assert_eq!(
        ec2.instance(&ours.instance_id).unwrap().state,
        InstanceState::Pending
    );
    assert_eq!(
        ec2.instance(&foreign.instance_id).unwrap().state,
        InstanceState::Pending
    );
    assert!(ec2.terminated_by_request().is_empty());
    assert!(ec2.take_events().is_empty());
    assert_eq!(
        ec2.launched_total(),
        1,
        "a foreign instance is not ours to count"
    );
}

#[test]
fn terminate_needs_every_instance_to_exist() {
    let (_, ec2) = ec2();
    let ours = run_one(&ec2, launch("uid-1")).unwrap();
    let err = block_on(ec2.terminate_instances(
        vec![ours.instance_id.clone(), "i-0ffffffffffffffff".into()],
        guard(),
    ))
    .unwrap_err();
    assert_eq!(err.code(), "InvalidInstanceID.NotFound");
    assert_eq!(
        ec2.instance(&ours.instance_id).unwrap().state,
        InstanceState::Pending
    );
    let err = block_on(ec2.terminate_instances(vec!["web-0".into()], guard())).unwrap_err();
    assert_eq!(err.code(), "InvalidInstanceID.Malformed");
}

#[test]
fn an_instance_runs_exactly_at_the_boot_delay_and_terminates_after_the_shutdown_delay() {
    let (clock, ec2) = ec2();
    let i = run_one(&ec2, launch("uid-1")).unwrap();
    let id = i.instance_id.clone();
    assert_eq!(i.launch_time, start());
    assert_eq!(
        ec2.next_transition(),
        Some(start() + Duration::from_secs(3))
    );

    clock.advance(Duration::from_millis(2999));
    ec2.advance();
    assert_eq!(ec2.instance(&id).unwrap().state, InstanceState::Pending);
    clock.advance(Duration::from_millis(1));
    ec2.advance();
    assert_eq!(ec2.instance(&id).unwrap().state, InstanceState::Running);
    assert_eq!(ec2.next_transition(), None);
    assert_eq!(
        states(&ec2.take_events()),
        [
            (id.clone(), "pending".into()),
            (id.clone(), "running".into())
        ]
    );

    clock.advance(Duration::from_secs(10));
    block_on(ec2.terminate_instances(vec![id.clone()], guard())).unwrap();
    assert_eq!(
        ec2.next_transition(),
        Some(start() + Duration::from_secs(15))
    );
    clock.advance(Duration::from_secs(2));
    let gone = ec2.instance(&id).unwrap();
    assert_eq!(gone.state, InstanceState::Terminated);
    assert_eq!(
        gone.private_ip, None,
        "a terminated instance releases its address"
    );
    assert_eq!(
        states(&ec2.take_events()),
        [
            (id.clone(), "shutting-down".into()),
            (id.clone(), "terminated".into())
        ]
    );
    assert_eq!(ec2.terminated_by_request(), vec![id.clone()]);

    // Terminating again is a no-op that reports the current state.
    let again = block_on(ec2.terminate_instances(vec![id.clone()], guard())).unwrap();
    assert_eq!(again, vec![(id.clone(), InstanceState::Terminated)]);
    assert!(ec2.take_events().is_empty());
    assert_eq!(ec2.terminated_by_request(), vec![id]);
}

#[test]
fn a_late_advance_applies_transitions_in_time_order_with_their_own_times() {
    let (clock, ec2) = ec2();
    let a = run_one(&ec2, launch("uid-a")).unwrap().instance_id;
    clock.advance(Duration::from_secs(1));
    let b = run_one(&ec2, launch("uid-b")).unwrap().instance_id;
    block_on(ec2.terminate_instances(vec![b.clone()], guard())).unwrap();
    clock.advance(Duration::from_secs(60));
    ec2.advance();
    let events = ec2.take_events();
    let times: Vec<i64> = events
        .iter()
        .map(|e| e.time.map(|t| t.timestamp()).unwrap_or_default() - start().as_second())
        .collect();
    assert_eq!(
        states(&events),
        [
            (a.clone(), "pending".into()),
            (b.clone(), "pending".into()),
            (b.clone(), "shutting-down".into()),
            // Both at t+3 s: ties go in launch order.
            (a.clone(), "running".into()),
            (b.clone(), "terminated".into()),
        ]
    );
    assert_eq!(times, [0, 1, 1, 3, 3]);
}

#[test]
fn state_change_events_have_eventbridge_shape() {
    let (_, ec2) = ec2();
    let id = run_one(&ec2, launch("uid-1")).unwrap().instance_id;
    let events = ec2.take_events();
    let json = serde_json::to_string(&events[0]).unwrap();
    let parsed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed["version"], "0");
    assert_eq!(
        parsed["detail-type"],
        "EC2 Instance State-change Notification"
    );
    assert_eq!(parsed["source"], "aws.ec2");
    assert_eq!(parsed["account"], "123456789012");
    assert_eq!(parsed["region"], "us-east-1");
    assert_eq!(parsed["time"], "2025-01-01T00:00:00Z");
    assert_eq!(parsed["detail"]["instance-id"], id.as_str());
    assert_eq!(parsed["detail"]["state"], "pending");
    assert_eq!(
        parsed["resources"],
        serde_json::json!([format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}")])
    );
    let event_id = parsed["id"].as_str().unwrap();
    assert_eq!(event_id.len(), 36);
    assert_eq!(event_id.matches('-').count(), 4);
    // And it round-trips through the library's own type.
    let back: capstan_runtime::BusEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, events[0]);
}

#[test]
fn with_no_boot_delay_the_instance_runs_on_the_next_advance() {
    let (_, shared) = clock();
    let ec2 = SimEc2::new(
        Ec2Config {
            boot_delay: Duration::ZERO,
            ..Ec2Config::default()
        },
        shared,
    );
    let i = run_one(&ec2, launch("uid-1")).unwrap();
    assert_eq!(i.state, InstanceState::Pending);
    ec2.advance();
    assert_eq!(
        ec2.instance(&i.instance_id).unwrap().state,
        InstanceState::Running
    );
    assert_eq!(
        states(&ec2.take_events()),
        [
            (i.instance_id.clone(), "pending".into()),
            (i.instance_id, "running".into())
        ]
    );
}

#[test]
fn behind_our_back_stops_and_terminations_show_up_as_events() {
    let (clock, ec2) = ec2();
    let a = run_one(&ec2, launch("uid-a")).unwrap().instance_id;
    let b = run_one(&ec2, launch("uid-b")).unwrap().instance_id;
    assert!(
        !ec2.stop_instance(&a),
        "a pending instance cannot be stopped"
    );
    clock.advance(Duration::from_secs(3));
    ec2.take_events();
    assert!(ec2.stop_instance(&a));
    assert!(ec2.terminate_externally(&b));
    assert!(!ec2.terminate_externally(&b));
    clock.advance(Duration::from_secs(2));
    assert_eq!(ec2.instance(&a).unwrap().state, InstanceState::Stopped);
    assert_eq!(ec2.instance(&b).unwrap().state, InstanceState::Terminated);
    assert_eq!(
        states(&ec2.take_events()),
        [
            (a.clone(), "stopping".into()),
            (b.clone(), "shutting-down".into()),
            (a.clone(), "stopped".into()),
            (b.clone(), "terminated".into()),
        ]
    );
    assert!(ec2.terminated_by_request().is_empty());
    // A stopped instance can still be terminated through the API.
    let s = block_on(ec2.terminate_instances(vec![a.clone()], guard())).unwrap();
    assert_eq!(s, vec![(a, InstanceState::ShuttingDown)]);
}

#[test]
fn describe_finds_instances_by_tag_including_terminated_and_foreign_ones() {
    let (clock, ec2) = ec2();
    let a = run_one(&ec2, launch("uid-a")).unwrap().instance_id;
    let b = run_one(&ec2, launch("uid-b")).unwrap().instance_id;
    let f = ec2
        .launch_foreign(SUBNET_A, [(GUARD.0, GUARD.1)])
        .unwrap()
        .instance_id;
    block_on(ec2.terminate_instances(vec![b.clone()], guard())).unwrap();
    clock.advance(Duration::from_secs(60));
    let ids = |tags: Vec<(String, String)>| -> Vec<String> {
        block_on(ec2.describe_instances(tags))
            .unwrap()
            .into_iter()
            .map(|i| i.instance_id)
            .collect()
    };
    assert_eq!(ids(vec![guard()]), [a.clone(), b.clone(), f]);
    assert_eq!(
        ids(vec![
            guard(),
            ("capstan.dev/machine-uid".into(), "uid-b".into())
        ]),
        [b]
    );
    assert_eq!(ec2.calls().describe_instances, 2);
}

#[test]
fn private_addresses_are_unique_and_in_the_subnet() {
    let (_, ec2) = ec2();
    let mut b = launch("uid-b");
    b.subnet_id = SUBNET_B.into();
    let got = block_on(ec2.run_instances(vec![launch("uid-a"), launch("uid-a2"), b]));
    let ips: Vec<String> = got
        .into_iter()
        .map(|r| r.unwrap().private_ip.unwrap())
        .collect();
    assert_eq!(ips, ["10.0.0.4", "10.0.0.5", "10.0.16.4"]);
    let zones: Vec<String> = ec2
        .instances()
        .into_iter()
        .map(|i| i.availability_zone)
        .collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1a", "us-east-1b"]);
}

#[test]
fn fail_next_fails_one_call_of_that_operation() {
    let (_, ec2) = ec2();
    ec2.fail_next(
        Ec2Op::RunInstances,
        ComputeError::Throttled {
            code: "RequestLimitExceeded".into(),
        },
    );
    let results = block_on(ec2.run_instances(vec![launch("a"), launch("b")]));
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().is_err_and(ComputeError::is_retryable))
    );
    assert!(ec2.instances().is_empty());
    assert!(run_one(&ec2, launch("a")).is_ok());

    ec2.fail_next(
        Ec2Op::DescribeInstances,
        ComputeError::Unavailable("503".into()),
    );
    assert!(block_on(ec2.describe_instances(vec![])).is_err());
    assert_eq!(block_on(ec2.describe_instances(vec![])).unwrap().len(), 1);
}

#[test]
fn an_offering_out_of_capacity_is_unfulfillable() {
    let (_, ec2) = ec2();
    ec2.set_capacity("m7i.large", "us-east-1a", false);
    let err = run_one(&ec2, launch("a")).unwrap_err();
    assert!(
        matches!(err, ComputeError::Unfulfillable { ref code, .. } if code == "InsufficientInstanceCapacity")
    );
    let mut elsewhere = launch("a");
    elsewhere.subnet_id = SUBNET_B.into();
    assert!(
        run_one(&ec2, elsewhere).is_ok(),
        "the failed token was not consumed"
    );
    ec2.set_capacity("m7i.large", "us-east-1a", true);
    assert!(run_one(&ec2, launch("c")).is_ok());
}

fn limited(limits: capstan_sim::Ec2Limits) -> (ManualClock, SimEc2) {
    let (clock, shared) = clock();
    let config = Ec2Config {
        limits,
        ..Ec2Config::default()
    };
    (clock, SimEc2::new(config, shared))
}

#[test]
fn run_instances_requests_are_throttled_at_five_and_refill_at_two_a_second() {
    let (clock, ec2) = limited(capstan_sim::Ec2Limits::aws());
    for n in 0..5 {
        run_one(&ec2, launch(&format!("uid-{n}"))).unwrap();
    }
    let refused = run_one(&ec2, launch("uid-5")).unwrap_err();
    assert_eq!(
        refused,
        ComputeError::Throttled {
            code: "RequestLimitExceeded".into()
        }
    );
    assert_eq!(
        ec2.launched_total(),
        5,
        "a throttled request launches nothing"
    );
    clock.advance(Duration::from_millis(499));
    assert!(
        run_one(&ec2, launch("uid-5")).is_err(),
        "not a whole token yet"
    );
    clock.advance(Duration::from_millis(1));
    run_one(&ec2, launch("uid-5")).unwrap();
    clock.advance(Duration::from_secs(60));
    // Refills stop at the bucket's size.
    let results =
        block_on(ec2.run_instances((10..20).map(|n| launch(&format!("uid-{n}"))).collect()));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert_eq!(ec2.calls().throttled, 2 + 5);
}

#[test]
fn the_resource_bucket_limits_instances_and_a_repeated_token_costs_none() {
    let (clock, ec2) = limited(capstan_sim::Ec2Limits {
        run_instances: capstan_sim::Bucket::new(100, 100),
        run_instances_resources: capstan_sim::Bucket::new(3, 1),
        ..capstan_sim::Ec2Limits::aws()
    });
    for n in 0..3 {
        run_one(&ec2, launch(&format!("uid-{n}"))).unwrap();
    }
    // The same token returns the first instance: it starts none, so it is not refused.
    run_one(&ec2, launch("uid-0")).unwrap();
    assert!(run_one(&ec2, launch("uid-3")).is_err());
    clock.advance(Duration::from_secs(1));
    run_one(&ec2, launch("uid-3")).unwrap();
    assert_eq!(ec2.launched_total(), 4);
}

#[test]
fn terminations_take_a_request_token_and_one_instance_token_each() {
    let (clock, ec2) = limited(capstan_sim::Ec2Limits {
        run_instances: capstan_sim::Bucket::new(100, 100),
        terminate_instances_resources: capstan_sim::Bucket::new(2, 1),
        ..capstan_sim::Ec2Limits::aws()
    });
    let ids: Vec<String> = (0..3)
        .map(|n| {
            run_one(&ec2, launch(&format!("uid-{n}")))
                .unwrap()
                .instance_id
        })
        .collect();
    let err = block_on(ec2.terminate_instances(ids.clone(), guard())).unwrap_err();
    assert_eq!(err.code(), "RequestLimitExceeded");
    assert!(
        ec2.terminated_by_request().is_empty(),
        "refused whole: nothing terminates"
    );
    block_on(ec2.terminate_instances(ids[..2].to_vec(), guard())).unwrap();
    assert!(block_on(ec2.terminate_instances(ids[2..].to_vec(), guard())).is_err());
    clock.advance(Duration::from_secs(1));
    block_on(ec2.terminate_instances(ids[2..].to_vec(), guard())).unwrap();
}

#[test]
fn limits_are_off_by_default() {
    let (_, ec2) = ec2();
    for n in 0..50 {
        run_one(&ec2, launch(&format!("uid-{n}"))).unwrap();
    }
    assert_eq!(ec2.calls().throttled, 0);
}

/// RunInstances with MaxCount n and a ClientToken, as EC2 answers it: the same token
/// and parameters return the first call's instances (launch indexes 0..n, nothing new
/// started or charged); the same token with another count or instance type is
/// IdempotentParameterMismatch.
#[test]
fn a_batched_launch_is_idempotent_on_its_token_with_launch_indexes() {
    let (_clock, ec2) = ec2();
    let first = block_on(ec2.run_batch(launch("lb-1"), 4)).expect("launched");
    let mut indexes: Vec<Option<u32>> = first.iter().map(|i| i.launch_index).collect();
    indexes.sort();
    assert_eq!(indexes, vec![Some(0), Some(1), Some(2), Some(3)]);
    let again = block_on(ec2.run_batch(launch("lb-1"), 4)).expect("the same reservation");
    assert_eq!(
        again.iter().map(|i| &i.instance_id).collect::<Vec<_>>(),
        first.iter().map(|i| &i.instance_id).collect::<Vec<_>>()
    );
    assert_eq!(ec2.launched_total(), 4);
    for other in [
        block_on(ec2.run_batch(launch("lb-1"), 3)),
        block_on(ec2.run_batch(
            LaunchRequest {
                instance_type: "m7i.xlarge".into(),
                ..launch("lb-1")
            },
            4,
        )),
    ] {
        match other {
            Err(ComputeError::Invalid { code, .. }) => {
                assert_eq!(code, "IdempotentParameterMismatch")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ec2.launched_total(), 4);
}
