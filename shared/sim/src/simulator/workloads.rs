//! What the simulated people do: scripts of applies and deletes at virtual times,
//! and what the tree must look like once everything has settled.

use std::time::Duration;

use capstan_model::{IntOrPercent, Kind, Object, ObjectKey};
use capstan_reconcile::Tree;

/// The quickstart newcomers apply (3 control plane + 3 workers).
const QUICKSTART: &str = include_str!("../../../../examples/quickstart.yaml");

/// The second image the simulated region knows, for rollouts.
pub const NEW_IMAGE: &str = "ami-0fedcba9876543210";

/// One thing a person does.
#[derive(Clone, Debug)]
pub enum Op {
    Apply(Vec<Object>),
    Delete(ObjectKey),
    /// Something the cluster's users do in the workload cluster itself.
    Pods(PodsOp),
    /// An outage (a zone, a spot reclaim wave) terminates this many running workers
    /// at once, from outside Capstan.
    Outage {
        workers: usize,
    },
}

/// What the cluster's users run in a workload cluster (the `drain` workload).
#[derive(Clone, Debug)]
pub enum PodsOp {
    /// A Deployment `web` of `replicas` pods on the workers' Nodes, a budget on it
    /// allowing one pod down at a time, and a DaemonSet on every Node.
    Deploy {
        namespace: String,
        cluster: String,
        replicas: u32,
    },
    /// The budget on `web` needs `min_available` healthy pods (as many as there are
    /// blocks every eviction).
    MinAvailable {
        namespace: String,
        cluster: String,
        min_available: u32,
    },
    /// The budget on `web` allows one pod down again.
    OneDown { namespace: String, cluster: String },
    /// A Deployment `burst` of `replicas` pods of 500m on the workers' Nodes (the
    /// `autoscale` workload): created the first time, scaled after.
    Burst {
        namespace: String,
        cluster: String,
        replicas: u32,
    },
}

impl PodsOp {
    pub fn perform(&self, workload: &crate::workload::MemWorkload) {
        use crate::workload::{Budget, ClusterKey, IntOrPercent, PodDisruptionBudget, PodSpec};
        let budget = |namespace: &str, cluster: &str, budget: Budget| {
            workload.add_pdb(
                ClusterKey::new(namespace, cluster),
                PodDisruptionBudget {
                    namespace: "default".into(),
                    name: "web".into(),
                    selector: [("app".to_string(), "web".to_string())].into(),
                    budget,
                },
            );
        };
        match self {
            PodsOp::Deploy {
                namespace,
                cluster,
                replicas,
            } => {
                let key = ClusterKey::new(namespace, cluster);
                workload.add_deployment(
                    key.clone(),
                    "web",
                    *replicas,
                    PodSpec::new("default", "web")
                        .requests(200, 256 << 20)
                        .node_selector("node-role.kubernetes.io/workers", ""),
                );
                workload.add_daemon_set(
                    key,
                    "node-agent",
                    PodSpec::new("kube-system", "node-agent").requests(50, 64 << 20),
                );
                budget(
                    namespace,
                    cluster,
                    Budget::MaxUnavailable(IntOrPercent::Int(1)),
                );
            }
            PodsOp::MinAvailable {
                namespace,
                cluster,
                min_available,
            } => budget(
                namespace,
                cluster,
                Budget::MinAvailable(IntOrPercent::Int(*min_available)),
            ),
            PodsOp::Burst {
                namespace,
                cluster,
                replicas,
            } => {
                let key = ClusterKey::new(namespace, cluster);
                if !workload.scale_deployment(key.clone(), "default", "burst", *replicas) {
                    workload.add_deployment(
                        key,
                        "burst",
                        *replicas,
                        PodSpec::new("default", "burst")
                            .requests(500, 256 << 20)
                            .node_selector("node-role.kubernetes.io/workers", ""),
                    );
                }
            }
            PodsOp::OneDown { namespace, cluster } => budget(
                namespace,
                cluster,
                Budget::MaxUnavailable(IntOrPercent::Int(1)),
            ),
        }
    }
}

/// A person's script and the end state it must lead to.
#[derive(Clone, Debug)]
pub struct Script {
    pub ops: Vec<(Duration, Op)>,
    /// Expected live Machines per (namespace, cluster, pool) at the end; empty with
    /// `expect_empty` for a deletion.
    pub expect: Vec<(String, String, String, usize)>,
    /// The image every Machine must run at the end, if the script rolled one.
    pub expect_image: Option<String>,
    pub expect_empty: bool,
}

/// The workloads, by name.
pub const WORKLOADS: &[&str] = &[
    "quickstart",
    "scale-storm",
    "rollout-during-scale-down",
    "delete-during-rollout",
    "multi-cluster",
    "edits-in-flight",
    "nodes",
    "drain",
    "autoscale",
    "outage",
];

/// The quickstart as a production pool would run it: workers on spot, watched by a
/// health check that remediates one Machine at a time and stops when more than 40 % are
/// unhealthy at once (so Machines that fail from outside are replaced rather than left
/// to block a rollout, and the simulation can hold the check to its limits).
fn quickstart() -> Vec<Object> {
    capstan_model::manifest::read_manifests("examples/quickstart.yaml", QUICKSTART)
        .unwrap_or_default()
        .into_iter()
        .map(|mut o| {
            match &mut o {
                Object::Cluster(c) => {
                    for pool in &mut c.spec.workers {
                        let mut check = capstan_model::PoolHealthCheck::default();
                        check.remediation.max_in_flight = Some(IntOrPercent::Int(1));
                        check.remediation.trigger_if.unhealthy_less_than_or_equal_to =
                            Some(IntOrPercent::Percent(40));
                        pool.health_check = Some(check);
                    }
                }
                Object::MachineClass(mc) if mc.metadata.name.ends_with("-workers") => {
                    mc.spec.market.market_type = capstan_model::MarketType::Spot;
                }
                _ => {}
            }
            o
        })
        .collect()
}

/// A copy of the quickstart as cluster `name` in `namespace`.
pub fn cluster_copy(namespace: &str, name: &str) -> Vec<Object> {
    quickstart()
        .into_iter()
        .map(|mut o| {
            o.metadata_mut().namespace = namespace.to_string();
            match &mut o {
                Object::Cluster(c) => {
                    c.metadata.name = name.to_string();
                    c.spec.control_plane.machine_class =
                        c.spec.control_plane.machine_class.replacen("demo", name, 1);
                    for w in &mut c.spec.workers {
                        w.machine_class = w.machine_class.replacen("demo", name, 1);
                    }
                }
                Object::MachineClass(mc) => {
                    mc.metadata.name = mc.metadata.name.replacen("demo", name, 1);
                    mc.spec.cluster_name = name.to_string();
                }
                _ => {}
            }
            o
        })
        .collect()
}

fn with_workers(objects: &[Object], replicas: i32) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                for w in &mut c.spec.workers {
                    w.replicas = Some(replicas);
                }
            }
            o
        })
        .collect()
}

fn with_image(objects: &[Object], image: &str) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Object::MachineClass(c) = &mut o {
                c.spec.image_id = image.to_string();
            }
            o
        })
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `objects` with the Cluster's nodes seen (an EKS access), the pools judged by their
/// Nodes' Ready condition, and with `retag`, a label and a taint on the workers' Nodes.
fn with_access(objects: &[Object], retag: bool) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                c.spec.access = Some(capstan_model::ClusterAccess {
                    eks: Some(capstan_model::EksAccess {
                        cluster_name: c.metadata.name.clone(),
                        region: None,
                    }),
                    kubeconfig: None,
                });
                for pool in &mut c.spec.workers {
                    if let Some(check) = &mut pool.health_check {
                        check.checks.unhealthy_node_conditions = [
                            capstan_model::ConditionStatus::False,
                            capstan_model::ConditionStatus::Unknown,
                        ]
                        .into_iter()
                        .map(|status| capstan_model::UnhealthyCondition {
                            type_: "Ready".into(),
                            status,
                            timeout_seconds: 300,
                        })
                        .collect();
                    }
                    if retag {
                        pool.metadata.labels.insert("tier".into(), "front".into());
                        pool.taints = vec![capstan_model::MachineTaint {
                            key: "example.com/dedicated".into(),
                            value: Some("web".into()),
                            effect: capstan_model::TaintEffect::NoSchedule,
                            propagation: capstan_model::TaintPropagation::Always,
                        }];
                    }
                }
            }
            o
        })
        .collect()
}

/// `objects` with the workers autoscaled within `[min, max]` on one 2-vCPU type
/// (three 500m pods to a Node).
fn autoscaled(objects: &[Object], min: i32, max: i32) -> Vec<Object> {
    objects
        .iter()
        .cloned()
        .map(|mut o| {
            match &mut o {
                Object::Cluster(c) => {
                    for w in &mut c.spec.workers {
                        w.replicas = None;
                        w.autoscaling = Some(capstan_model::Autoscaling { min, max });
                    }
                }
                Object::MachineClass(mc) if mc.metadata.name.ends_with("-workers") => {
                    mc.spec.instance_types = vec!["m7i.large".into()];
                }
                _ => {}
            }
            o
        })
        .collect()
}

/// `objects` with the workers' health check remediating however many are unhealthy
/// (still one at a time). The `drain` workload runs several times the steps of the
/// others (a drain looks again every 10 s), and the `external` fault fires per step:
/// under a 40 % limit, runs ended with every worker failed from outside and left to a
/// person, which says nothing about drains.
fn remediating_all(objects: Vec<Object>) -> Vec<Object> {
    objects
        .into_iter()
        .map(|mut o| {
            if let Object::Cluster(c) = &mut o {
                for pool in &mut c.spec.workers {
                    if let Some(check) = &mut pool.health_check {
                        check.remediation.trigger_if.unhealthy_less_than_or_equal_to = None;
                    }
                }
            }
            o
        })
        .collect()
}

fn expect(
    namespace: &str,
    cluster: &str,
    cp: usize,
    workers: usize,
) -> Vec<(String, String, String, usize)> {
    vec![
        (namespace.into(), cluster.into(), "control-plane".into(), cp),
        (namespace.into(), cluster.into(), "workers".into(), workers),
    ]
}

/// The script of workload `name`, or None for an unknown name.
pub fn script(name: &str) -> Option<Script> {
    let base = quickstart();
    let demo = ObjectKey::new("default", "demo", Kind::Cluster, "demo");
    let script = match name {
        "quickstart" => Script {
            ops: vec![(secs(0), Op::Apply(base))],
            expect: expect("default", "demo", 3, 3),
            expect_image: None,
            expect_empty: false,
        },
        // The quickstart with its nodes seen (spec.access): Machines run once their
        // Node joins, health checks judge Node conditions, the pool's labels and taints
        // change in place, and a rollout replaces Nodes.
        "nodes" => Script {
            ops: vec![
                (
                    secs(0),
                    Op::Apply(with_access(&with_workers(&base, 4), false)),
                ),
                (
                    secs(300),
                    Op::Apply(with_access(&with_workers(&base, 4), true)),
                ),
                (
                    secs(600),
                    Op::Apply(with_image(
                        &with_access(&with_workers(&base, 3), true),
                        NEW_IMAGE,
                    )),
                ),
            ],
            expect: expect("default", "demo", 3, 3),
            expect_image: Some(NEW_IMAGE.to_string()),
            expect_empty: false,
        },
        // Nodes running pods: a Deployment with a disruption budget and a DaemonSet.
        // A scale-down while the budget blocks every eviction (the drain waits), the
        // budget relaxing, then a rollout that drains the workers one by one.
        "drain" => {
            let (ns, cl) = ("default".to_string(), "demo".to_string());
            let pods = |op| Op::Pods(op);
            Script {
                ops: vec![
                    (
                        secs(0),
                        Op::Apply(remediating_all(with_access(&with_workers(&base, 4), false))),
                    ),
                    (
                        secs(150),
                        pods(PodsOp::Deploy {
                            namespace: ns.clone(),
                            cluster: cl.clone(),
                            replicas: 8,
                        }),
                    ),
                    (
                        secs(300),
                        pods(PodsOp::MinAvailable {
                            namespace: ns.clone(),
                            cluster: cl.clone(),
                            min_available: 8,
                        }),
                    ),
                    (
                        secs(310),
                        Op::Apply(remediating_all(with_access(&with_workers(&base, 3), false))),
                    ),
                    (
                        secs(600),
                        pods(PodsOp::OneDown {
                            namespace: ns.clone(),
                            cluster: cl.clone(),
                        }),
                    ),
                    (
                        secs(700),
                        Op::Apply(remediating_all(with_image(
                            &with_access(&with_workers(&base, 3), false),
                            NEW_IMAGE,
                        ))),
                    ),
                ],
                expect: expect("default", "demo", 3, 3),
                expect_image: Some(NEW_IMAGE.to_string()),
                expect_empty: false,
            }
        }
        // Pods come and go on an autoscaled pool: a burst the one worker cannot hold
        // (scale-up), gone again before the new Nodes join (they go after the quiet
        // period, one at a time, drained), a larger burst grown while Machines boot and
        // held for twenty minutes (to max), and most of it gone (back down to two).
        "autoscale" => {
            let (ns, cl) = ("default".to_string(), "demo".to_string());
            let burst = |replicas| {
                Op::Pods(PodsOp::Burst {
                    namespace: ns.clone(),
                    cluster: cl.clone(),
                    replicas,
                })
            };
            let pool = remediating_all(with_access(&autoscaled(&base, 1, 5), false));
            Script {
                ops: vec![
                    (secs(0), Op::Apply(pool)),
                    (secs(120), burst(10)),
                    (secs(200), burst(0)),
                    (secs(1200), burst(10)),
                    (secs(1220), burst(13)),
                    (secs(2700), burst(4)),
                ],
                // Four pods: the one worker left holds three, a second takes the fourth.
                expect: expect("default", "demo", 3, 2),
                expect_image: None,
                expect_empty: false,
            }
        }
        "scale-storm" => Script {
            ops: vec![
                (secs(0), Op::Apply(with_workers(&base, 0))),
                (secs(60), Op::Apply(with_workers(&base, 200))),
                (secs(180), Op::Apply(with_workers(&base, 3))),
                (secs(300), Op::Apply(with_workers(&base, 50))),
            ],
            expect: expect("default", "demo", 3, 50),
            expect_image: None,
            expect_empty: false,
        },
        "rollout-during-scale-down" => Script {
            ops: vec![
                (secs(0), Op::Apply(with_workers(&base, 10))),
                (
                    secs(240),
                    Op::Apply(with_image(&with_workers(&base, 4), NEW_IMAGE)),
                ),
            ],
            expect: expect("default", "demo", 3, 4),
            expect_image: Some(NEW_IMAGE.to_string()),
            expect_empty: false,
        },
        // An outage takes four of ten workers at once while the pool grows to twenty
        // (within the health check's 40 %): the check replaces them one at a time
        // (maxInFlight 1) while its passes run side by side with the new Machines'.
        "outage" => Script {
            ops: vec![
                (secs(0), Op::Apply(with_workers(&base, 10))),
                (secs(240), Op::Apply(with_workers(&base, 20))),
                (secs(240), Op::Outage { workers: 4 }),
            ],
            expect: expect("default", "demo", 3, 20),
            expect_image: None,
            expect_empty: false,
        },
        "delete-during-rollout" => Script {
            ops: vec![
                (secs(0), Op::Apply(base.clone())),
                (secs(240), Op::Apply(with_image(&base, NEW_IMAGE))),
                (secs(250), Op::Delete(demo)),
            ],
            expect: Vec::new(),
            expect_image: None,
            expect_empty: true,
        },
        "multi-cluster" => {
            let mut ops = vec![(secs(0), Op::Apply(base))];
            ops.push((
                secs(5),
                Op::Apply(with_workers(&cluster_copy("default", "blue"), 2)),
            ));
            ops.push((
                secs(10),
                Op::Apply(with_workers(&cluster_copy("team-b", "demo"), 4)),
            ));
            let mut e = expect("default", "demo", 3, 3);
            e.extend(expect("default", "blue", 3, 2));
            e.extend(expect("team-b", "demo", 3, 4));
            Script {
                ops,
                expect: e,
                expect_image: None,
                expect_empty: false,
            }
        }
        "edits-in-flight" => Script {
            ops: vec![
                (secs(0), Op::Apply(base.clone())),
                (secs(2), Op::Apply(with_workers(&base, 5))),
                (secs(3), Op::Apply(with_workers(&base, 2))),
                (
                    secs(5),
                    Op::Apply(with_image(&with_workers(&base, 2), NEW_IMAGE)),
                ),
                (
                    secs(8),
                    Op::Apply(with_image(&with_workers(&base, 4), NEW_IMAGE)),
                ),
            ],
            expect: expect("default", "demo", 3, 4),
            expect_image: Some(NEW_IMAGE.to_string()),
            expect_empty: false,
        },
        _ => return None,
    };
    Some(script)
}

/// What differs from the script's expected end state, one line each.
/// `items`: the keys of the workload's items left in the table.
pub fn unmet(script: &Script, trees: &[Tree], items: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if script.expect_empty && !items.is_empty() {
        problems.push(format!(
            "{} items left after the cluster was deleted, e.g. {}",
            items.len(),
            items.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    for (namespace, cluster, pool, want) in &script.expect {
        let machines: Vec<_> = trees
            .iter()
            .flat_map(|t| t.of_kind(Kind::Machine))
            .filter(|s| !s.is_deleting())
            .filter_map(|s| s.object.as_machine())
            .filter(|m| {
                &m.metadata.namespace == namespace
                    && &m.spec.cluster_name == cluster
                    && m.metadata.labels.get(capstan_model::labels::POOL) == Some(pool)
            })
            .collect();
        if machines.len() != *want {
            problems.push(format!(
                "{namespace}/{cluster} pool {pool} has {} Machines, {want} wanted",
                machines.len()
            ));
        }
        if let Some(image) = &script.expect_image {
            let old = machines
                .iter()
                .filter(|m| m.spec.launch().is_none_or(|l| &l.image_id != image))
                .count();
            if old > 0 {
                problems.push(format!(
                    "{namespace}/{cluster} pool {pool} has {old} Machines still on the old image"
                ));
            }
        }
    }
    problems
}
