//! Issue 12, item 7: the simulated EC2 refuses exactly what EC2 and the template's IAM
//! refuse, checked call by call. The same sequence of calls goes through the `Compute`
//! port to `SimEc2` (in memory) and to `Ec2Compute` over moto, and each call's outcome
//! (Ok, or the error's code) must be the same.
//!
//! moto enforces no IAM: the tag guards are the adapter's (it refuses what the
//! template's tag conditions refuse), so the comparison is adapter + moto against
//! SimEc2 — which is the point: the simulation must refuse what the deployed functions
//! are refused. Where moto departs from EC2's documented behaviour (ClientToken), the
//! row says so and pins both answers, so a change on either side shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use capstan_aws::Ec2Compute;
use capstan_model::LaunchRequest;
use capstan_model::labels::{TAG_INSTALLATION, TAG_MACHINE_UID, TAG_NAMESPACE};
use capstan_runtime::ports::{Compute, ComputeError, Instance};
use capstan_runtime::system::SystemClock;
use capstan_sim::{Ec2Config, SimEc2};

use crate::support::*;

const INSTALLATION: &str = "moto-parity";

/// One backend and the ids it gave the logical instances of the sequence.
struct Side<C> {
    compute: C,
    ids: BTreeMap<&'static str, String>,
}

impl<C: Compute> Side<C> {
    fn id(&self, name: &str) -> String {
        self.ids
            .get(name)
            .cloned()
            // Well formed, and no instance of either backend.
            .unwrap_or_else(|| "i-0123456789abcdef0".to_string())
    }

    /// Launches `request`; names the instance `name` if new. Answers "Ok(new)",
    /// "Ok(same as <name>)" or "Err(<code>)".
    async fn launch(&mut self, name: &'static str, request: LaunchRequest) -> String {
        match self.compute.run_instances(vec![request]).await.remove(0) {
            Ok(i) => {
                if let Some((known, _)) = self.ids.iter().find(|(_, id)| **id == i.instance_id) {
                    return format!("Ok(same as {known})");
                }
                self.ids.insert(name, i.instance_id);
                "Ok(new)".to_string()
            }
            Err(e) => err(&e),
        }
    }

    async fn tag(&self, names: &[&str], tags: &[(&str, &str)]) -> String {
        let ids = names.iter().map(|n| self.id(n)).collect();
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        outcome(self.compute.create_tags(ids, tags, guard()).await)
    }

    async fn terminate(&self, names: &[&str]) -> String {
        let ids = names.iter().map(|n| self.id(n)).collect();
        outcome(
            self.compute
                .terminate_instances(ids, guard())
                .await
                .map(|_| ()),
        )
    }

    /// The logical names of the live instances carrying `tags`.
    async fn describe(&self, tags: &[(&str, &str)]) -> String {
        let tags = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match self.compute.describe_instances(tags).await {
            Ok(found) => {
                let mut names: Vec<&str> = found
                    .iter()
                    .filter(|i| i.state.is_live())
                    .map(|i| self.name_of(i))
                    .collect();
                names.sort();
                format!("Ok({})", names.join(","))
            }
            Err(e) => err(&e),
        }
    }

    fn name_of(&self, i: &Instance) -> &str {
        self.ids
            .iter()
            .find(|(_, id)| **id == i.instance_id)
            .map_or("?", |(name, _)| name)
    }
}

fn guard() -> (String, String) {
    (TAG_INSTALLATION.to_string(), INSTALLATION.to_string())
}

fn err(e: &ComputeError) -> String {
    format!("Err({})", e.code())
}

fn outcome(r: Result<(), ComputeError>) -> String {
    match r {
        Ok(()) => "Ok".to_string(),
        Err(e) => err(&e),
    }
}

/// Steps where moto departs from EC2's documented behaviour, with what SimEc2 (as EC2)
/// and adapter + moto answer. Every other step must agree.
///
/// EC2 makes RunInstances idempotent on ClientToken: the same token and parameters
/// return the first instance; the same token with other parameters is
/// IdempotentParameterMismatch
/// (<https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html>).
/// moto records the token but never looks it up, and launches again. Capstan does not
/// rely on it: recovery finds an unrecorded launch by its tags first (see the crash test).
const MOTO_DEPARTS: &[(&str, &str, &str)] = &[
    (
        "launch again with the same token and parameters",
        "Ok(same as a)",
        "Ok(new)",
    ),
    (
        "launch with the same token and another instance type",
        "Err(IdempotentParameterMismatch)",
        "Ok(new)",
    ),
    (
        // moto's extra launches above carry a's tags, so a describe by a's uid sees them.
        "describe by a's machine uid",
        "Ok(a)",
        "Ok(a,a-again,a-other-type)",
    ),
    // EC2 refuses tag keys starting with `aws:` (reserved for AWS,
    // <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions>);
    // moto accepts them. Capstan's validation refuses them before any launch.
    (
        "launch with an aws: tag key",
        "Err(InvalidParameterValue)",
        "Ok(new)",
    ),
    ("tag a with an aws: key", "Err(InvalidParameterValue)", "Ok"),
    // EC2 answers "Invalid value '…' for InstanceType." (InvalidParameterValue); moto
    // answers InvalidInstanceType.NotFound. Both are final (`Invalid`) to Capstan.
    (
        "launch an instance type that does not exist",
        "Err(InvalidParameterValue)",
        "Err(InvalidInstanceType.NotFound)",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_ec2_and_ec2_over_moto_answer_every_call_alike() {
    let moto = Moto::start();
    let clients = moto.clients().await;
    let env = Ec2Env::discover(&clients).await;
    let config = Ec2Config {
        images: [env.image_id.clone()].into(),
        subnets: env
            .subnets
            .iter()
            .cloned()
            .zip(env.zones.iter().cloned())
            .collect(),
        ..Ec2Config::default()
    };
    let mut sim = Side {
        compute: SimEc2::new(config, Arc::new(SystemClock)),
        ids: BTreeMap::new(),
    };
    let mut aws = Side {
        compute: Ec2Compute::new(clients.ec2.clone()),
        ids: BTreeMap::new(),
    };

    let tags = |machine: &str, uid: &str| capstan_tags(INSTALLATION, "team-a", machine, uid);
    let a = env.launch("uid-a", tags("a", "uid-a"));
    let b = env.launch("uid-b", tags("b", "uid-b"));
    let other_type = LaunchRequest {
        instance_type: "t3.small".into(),
        ..a.clone()
    };
    let no_token = env.launch("", tags("c", "uid-c"));
    let foreign = env.launch("", BTreeMap::from([("team".to_string(), "x".to_string())]));
    let untagged = env.launch("", BTreeMap::new());
    let reserved_key = env.launch(
        "uid-d",
        BTreeMap::from([("aws:owner".to_string(), "x".to_string())]),
    );
    let bad_image = LaunchRequest {
        image_id: "ami-0000000000000dead".into(),
        ..env.launch("uid-e", tags("e", "uid-e"))
    };
    let bad_subnet = LaunchRequest {
        subnet_id: "subnet-0000000000000dead".into(),
        ..env.launch("uid-f", tags("f", "uid-f"))
    };
    let bad_type = LaunchRequest {
        instance_type: "m9z.huge".into(),
        ..env.launch("uid-g", tags("g", "uid-g"))
    };

    let mut rows: Vec<(&str, String, String)> = Vec::new();
    macro_rules! step {
        ($what:expr, |$side:ident| $call:expr) => {{
            let s = {
                let $side = &mut sim;
                $call.await
            };
            let m = {
                let $side = &mut aws;
                $call.await
            };
            rows.push(($what, s, m));
        }};
    }
    step!("launch a with its uid as token", |x| x
        .launch("a", a.clone()));
    step!("launch again with the same token and parameters", |x| x
        .launch("a-again", a.clone()));
    step!(
        "launch with the same token and another instance type",
        |x| x.launch("a-other-type", other_type.clone())
    );
    step!("launch b", |x| x.launch("b", b.clone()));
    step!("launch c without a token", |x| x
        .launch("c", no_token.clone()));
    step!("launch c again without a token: a second instance", |x| x
        .launch("c2", no_token.clone()));
    step!("launch an instance without the installation tag", |x| x
        .launch("foreign", foreign.clone()));
    step!("launch with no tags at all", |x| x
        .launch("untagged", untagged.clone()));
    step!("launch with an aws: tag key", |x| x
        .launch("reserved", reserved_key.clone()));
    step!("launch from an image that does not exist", |x| x
        .launch("e", bad_image.clone()));
    step!("launch into a subnet that does not exist", |x| x
        .launch("f", bad_subnet.clone()));
    step!("launch an instance type that does not exist", |x| x
        .launch("g", bad_type.clone()));
    step!("tag a", |x| x.tag(&["a"], &[("team", "infra")]));
    step!("tag a with the installation key", |x| x
        .tag(&["a"], &[(TAG_INSTALLATION, INSTALLATION)]));
    step!("tag a with another capstan.dev/ key", |x| x
        .tag(&["a"], &[(TAG_NAMESPACE, "team-b")]));
    step!("tag an instance without the installation tag", |x| x
        .tag(&["foreign"], &[("team", "infra")]));
    step!("tag a and one without the installation tag", |x| x
        .tag(&["a", "foreign"], &[("team", "infra")]));
    step!("tag an unknown instance", |x| x
        .tag(&["unknown"], &[("team", "infra")]));
    step!("tag an unknown instance with the installation key", |x| x
        .tag(&["unknown"], &[(TAG_INSTALLATION, "other")]));
    step!("tag a with an aws: key", |x| x
        .tag(&["a"], &[("aws:owner", "x")]));
    step!("describe by a's machine uid", |x| x
        .describe(&[(TAG_MACHINE_UID, "uid-a")]));
    step!("describe by the installation and b's uid", |x| x.describe(
        &[(TAG_INSTALLATION, INSTALLATION), (TAG_MACHINE_UID, "uid-b")]
    ));
    step!("describe by a tag nobody has", |x| x
        .describe(&[(TAG_MACHINE_UID, "uid-nobody")]));
    step!("terminate an instance without the installation tag", |x| x
        .terminate(&["foreign"]));
    step!("terminate b and one without the installation tag", |x| x
        .terminate(&["b", "foreign"]));
    step!("b is still live after the refused call", |x| x
        .describe(&[(TAG_MACHINE_UID, "uid-b")]));
    step!("terminate an unknown instance", |x| x
        .terminate(&["unknown"]));
    step!("terminate nothing", |x| x.terminate(&[]));
    step!("terminate b", |x| x.terminate(&["b"]));
    step!("terminate b again", |x| x.terminate(&["b"]));
    step!("tag b once terminated", |x| x
        .tag(&["b"], &[("team", "infra")]));

    let table: String = rows
        .iter()
        .map(|(what, s, m)| format!("{what:<58} sim {s:<36} moto {m}\n"))
        .collect();
    eprintln!("{table}");
    let mut wrong = Vec::new();
    for (what, s, m) in &rows {
        match MOTO_DEPARTS.iter().find(|(w, _, _)| w == what) {
            Some((_, want_sim, want_moto)) if s != want_sim || m != want_moto => {
                wrong.push(format!(
                    "{what}: sim {s} (want {want_sim}), moto {m} (want {want_moto})"
                ));
            }
            Some(_) => {}
            None if s != m => wrong.push(format!("{what}: sim {s}, moto {m}")),
            None => {}
        }
    }
    assert!(wrong.is_empty(), "{}\n{table}", wrong.join("\n"));
}

/// A batched launch (issue 16): RunInstances with MinCount 1 and MaxCount 3 through the
/// `Compute` port. SimEc2, as EC2, starts three instances, each with its AmiLaunchIndex
/// (0, 1, 2) and the batch's tags, and a repeated token returns the same three. moto
/// departs twice: it starts MinCount instances, not up to MaxCount (one, index 0: the
/// partial fulfilment the batch's other members recover from by launching again), and
/// it ignores the repeated ClientToken (see `MOTO_DEPARTS`), launching one more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_launch_reports_each_instances_launch_index_on_both_backends() {
    use capstan_model::labels::TAG_LAUNCH_BATCH;
    let moto = Moto::start();
    let clients = moto.clients().await;
    let env = Ec2Env::discover(&clients).await;
    let config = Ec2Config {
        images: [env.image_id.clone()].into(),
        subnets: env
            .subnets
            .iter()
            .cloned()
            .zip(env.zones.iter().cloned())
            .collect(),
        ..Ec2Config::default()
    };
    let sim = SimEc2::new(config, Arc::new(SystemClock));
    let aws = Ec2Compute::new(clients.ec2.clone());
    let mut tags = BTreeMap::from([
        (TAG_INSTALLATION.to_string(), INSTALLATION.to_string()),
        (TAG_NAMESPACE.to_string(), "team-a".to_string()),
    ]);
    tags.insert(TAG_LAUNCH_BATCH.to_string(), "lb-parity".to_string());
    let request = env.launch("lb-parity", tags);
    let indexes = |instances: &[Instance]| {
        let mut found: Vec<Option<u32>> = instances.iter().map(|i| i.launch_index).collect();
        found.sort();
        found
    };
    let by_batch = vec![(TAG_LAUNCH_BATCH.to_string(), "lb-parity".to_string())];
    // (backend, launch indexes of the first call, the repeat returns the same
    // instances, instances carrying the batch tag after both calls)
    let expected = [
        ("sim", vec![Some(0), Some(1), Some(2)], true, 3),
        ("moto", vec![Some(0)], false, 2),
    ];
    for (name, want_indexes, want_same, want_described) in expected {
        let (first, again, described) = if name == "sim" {
            (
                sim.run_batch(request.clone(), 3).await,
                sim.run_batch(request.clone(), 3).await,
                sim.describe_instances(by_batch.clone()).await,
            )
        } else {
            (
                aws.run_batch(request.clone(), 3).await,
                aws.run_batch(request.clone(), 3).await,
                aws.describe_instances(by_batch.clone()).await,
            )
        };
        let first = first.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(indexes(&first), want_indexes, "{name}");
        for i in &first {
            assert_eq!(
                i.tags.get(TAG_LAUNCH_BATCH).map(String::as_str),
                Some("lb-parity"),
                "{name}"
            );
        }
        let again = again.unwrap_or_else(|e| panic!("{name}: {e}"));
        let same = again
            .iter()
            .all(|i| first.iter().any(|f| f.instance_id == i.instance_id));
        assert_eq!(same, want_same, "{name}: the repeated token");
        let described = described.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(described.len(), want_described, "{name}");
        // Described again, each keeps its launch index.
        assert!(
            described.iter().all(|i| i.launch_index.is_some()),
            "{name}: {described:?}"
        );
    }
}
