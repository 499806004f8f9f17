//! A Cluster expands its topology — a control plane and worker pools — into
//! MachineDeployments (and a MachineHealthCheck per pool that asks for one), reports
//! their readiness, and on deletion tears down its whole partition.

use std::collections::{BTreeMap, BTreeSet};

use capstan_model::labels::{
    AUTOSCALER_MAX_SIZE, AUTOSCALER_MIN_SIZE, CLUSTER_NAME, CONTROL_PLANE_POOL, POOL,
    POOL_ANNOTATIONS, RESERVED_PREFIX, ROLE,
};
use capstan_model::meta::condition;
use capstan_model::{
    Cluster, ClusterPhase, Deletion, DeletionOrder, Expect, Kind, LabelSelector, MachineDeployment,
    MachineDeploymentSpec, MachineHealthCheck, MachineHealthCheckSpec, MachineTemplate,
    MachineTemplateSpec, Object, ObjectMeta, Resource, Role, Rollout, StoredObject,
    TemplateMetadata,
};

use crate::deployment::set_flag;
use crate::lifecycle::{Ctx, Decision, cascade, owner_ref};
use crate::plan::Action;
use crate::tree::Tree;

/// The name of the MachineDeployment for `pool` of `cluster`.
pub fn deployment_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-{pool}")
}

pub fn decide(c: &mut Cluster, tree: &Tree, ctx: &Ctx, deleting: bool) -> Decision {
    let mut d = Decision::default();
    if deleting {
        c.status.phase = ClusterPhase::Deleting;
        // Everything the cluster owns, and everything in its partition nobody owns
        // (MachineClasses, hand-written objects): owned children cascade from their owners.
        let ours = tree.all().filter(|s| {
            s.object.kind() != Kind::Cluster
                && s.object
                    .metadata()
                    .controller()
                    .is_none_or(|o| o.kind == Kind::Cluster)
        });
        cascade(ours, &mut d.children);
        // An object that cannot be read is never taken for gone.
        d.remove = !tree.all().any(|s| s.object.kind() != Kind::Cluster)
            && tree.all_unreadable().all(|u| u.key.kind == Kind::Cluster);
        return d;
    }

    let wanted = deployments(c);
    for md in wanted.values() {
        if tree
            .unreadable(Kind::MachineDeployment, &md.metadata.name)
            .is_some()
        {
            continue; // present, but not to be rewritten until it can be read
        }
        sync_child(
            tree.get(Kind::MachineDeployment, &md.metadata.name),
            Object::MachineDeployment(md.clone()),
            &mut d.children,
            |existing, want| {
                let (Object::MachineDeployment(e), Object::MachineDeployment(w)) = (existing, want)
                else {
                    return None;
                };
                let mut next = e.clone();
                let replicas = next.spec.replicas;
                next.spec = w.spec.clone();
                // With autoscaling, the pool's size belongs to the autoscaler after creation.
                if let Some(bounds) = pool_autoscaling(c, &e.metadata.name) {
                    next.spec.replicas = replicas.clamp(bounds.0, bounds.1);
                }
                // Labels and annotations are the cluster's to set; other keys (an
                // autoscaler's own) are kept. The autoscaler bounds follow the pool.
                next.metadata.labels.extend(w.metadata.labels.clone());
                next.metadata.annotations.remove(AUTOSCALER_MIN_SIZE);
                next.metadata.annotations.remove(AUTOSCALER_MAX_SIZE);
                next.metadata
                    .annotations
                    .extend(w.metadata.annotations.clone());
                (next.spec != e.spec || next.metadata != e.metadata)
                    .then_some(Object::MachineDeployment(next))
            },
        );
    }
    let checks = health_checks(c);
    for hc in checks.values() {
        if tree
            .unreadable(Kind::MachineHealthCheck, &hc.metadata.name)
            .is_some()
        {
            continue;
        }
        sync_child(
            tree.get(Kind::MachineHealthCheck, &hc.metadata.name),
            Object::MachineHealthCheck(hc.clone()),
            &mut d.children,
            |existing, want| {
                let (Object::MachineHealthCheck(e), Object::MachineHealthCheck(w)) =
                    (existing, want)
                else {
                    return None;
                };
                (e.spec != w.spec).then(|| {
                    let mut next = e.clone();
                    next.spec = w.spec.clone();
                    Object::MachineHealthCheck(next)
                })
            },
        );
    }
    // Children the topology no longer names.
    let name = c.metadata.name.clone();
    let unwanted = tree
        .owned_by(Kind::MachineDeployment, Kind::Cluster, &name)
        .filter(|s| !wanted.contains_key(s.object.name()))
        .chain(
            tree.owned_by(Kind::MachineHealthCheck, Kind::Cluster, &name)
                .filter(|s| !checks.contains_key(s.object.name())),
        );
    cascade(unwanted, &mut d.children);

    report(c, tree, &wanted, ctx);
    crate::conditions::report_unreadable(
        &mut c.status.conditions,
        tree.all_unreadable().filter(|u| {
            u.key.kind == Kind::MachineDeployment || u.key.kind == Kind::MachineHealthCheck
        }),
        ctx.now,
    );
    d
}

/// Creates `want` if absent, or updates it when `update` says how; waits while an
/// earlier object of that name is still being torn down.
fn sync_child(
    existing: Option<&StoredObject>,
    want: Object,
    actions: &mut Vec<Action>,
    update: impl Fn(&Object, &Object) -> Option<Object>,
) {
    match existing {
        None => actions.push(Action::PutDesired {
            object: want,
            expect: Expect::Absent,
        }),
        Some(s) if s.is_deleting() => {}
        Some(s) => {
            if let (Some(next), Some(rv)) = (update(&s.object, &want), s.desired_rv) {
                actions.push(Action::PutDesired {
                    object: next,
                    expect: Expect::Version(rv),
                });
            }
        }
    }
}

fn pool_autoscaling(c: &Cluster, md_name: &str) -> Option<(i32, i32)> {
    c.spec
        .workers
        .iter()
        .find(|p| deployment_name(&c.metadata.name, &p.name) == md_name)
        .and_then(|p| p.autoscaling.as_ref())
        .map(|a| (a.min, a.max.max(a.min)))
}

/// The MachineDeployments the topology asks for, by name.
pub fn deployments(c: &Cluster) -> BTreeMap<String, MachineDeployment> {
    let mut out = BTreeMap::new();
    let cp = &c.spec.control_plane;
    // The control plane always rolls one machine at a time and never drops below its size.
    let cp_md = deployment(
        c,
        CONTROL_PLANE_POOL,
        Role::ControlPlane,
        &cp.machine_class,
        cp.replicas,
        Rollout::default(),
        DeletionOrder::Oldest,
    );
    out.insert(cp_md.metadata.name.clone(), cp_md);
    for pool in &c.spec.workers {
        let replicas = pool
            .replicas
            .or_else(|| pool.autoscaling.as_ref().map(|a| a.min))
            .unwrap_or(1);
        let rollout = pool.rollout.clone().unwrap_or_default();
        let mut md = deployment(
            c,
            &pool.name,
            Role::Worker,
            &pool.machine_class,
            replicas,
            rollout,
            DeletionOrder::Random,
        );
        let t = &mut md.spec.template;
        t.metadata.labels.extend(unreserved(&pool.metadata.labels));
        t.metadata
            .annotations
            .extend(unreserved(&pool.metadata.annotations));
        // The drain opt-outs a pool may ask for its Machines (Cluster API users put
        // them on the MachineDeployment's template).
        t.metadata.annotations.extend(
            pool.metadata
                .annotations
                .iter()
                .filter(|(k, _)| POOL_ANNOTATIONS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        t.spec
            .additional_tags
            .extend(unreserved(&pool.additional_tags));
        t.spec.taints = pool.taints.clone();
        t.spec.deletion = pool.deletion.clone();
        // Cluster API's cluster-autoscaler provider reads the node group's bounds here.
        if let Some(a) = &pool.autoscaling {
            let ann = &mut md.metadata.annotations;
            ann.insert(AUTOSCALER_MIN_SIZE.to_string(), a.min.to_string());
            ann.insert(
                AUTOSCALER_MAX_SIZE.to_string(),
                a.max.max(a.min).to_string(),
            );
        }
        out.insert(md.metadata.name.clone(), md);
    }
    out
}

/// The entries whose keys are not Capstan's own (`capstan.dev/`): a Cluster's labels
/// must not be able to forge the labels Capstan selects and tags by.
fn unreserved(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn pool_labels(c: &Cluster, pool: &str, role: Role) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CLUSTER_NAME.to_string(), c.metadata.name.clone()),
        (POOL.to_string(), pool.to_string()),
        (ROLE.to_string(), role.as_str().to_string()),
    ])
}

fn deployment(
    c: &Cluster,
    pool: &str,
    role: Role,
    class: &str,
    replicas: i32,
    rollout: Rollout,
    order: DeletionOrder,
) -> MachineDeployment {
    let labels = pool_labels(c, pool, role);
    // The Cluster's own labels and annotations reach every Machine (in place).
    let mut template_labels = unreserved(&c.metadata.labels);
    template_labels.extend(labels.clone());
    Resource {
        metadata: ObjectMeta {
            name: deployment_name(&c.metadata.name, pool),
            namespace: c.metadata.namespace.clone(),
            labels: labels.clone(),
            owner_references: vec![owner_ref(Kind::Cluster, &c.metadata)],
            ..ObjectMeta::default()
        },
        spec: MachineDeploymentSpec {
            cluster_name: c.metadata.name.clone(),
            replicas,
            template: MachineTemplate {
                metadata: TemplateMetadata {
                    labels: template_labels,
                    annotations: unreserved(&c.metadata.annotations),
                },
                spec: MachineTemplateSpec {
                    role,
                    version: c.spec.version.clone(),
                    machine_class: class.to_string(),
                    failure_domain: None,
                    additional_tags: unreserved(&c.spec.additional_tags),
                    taints: Vec::new(),
                    deletion: Default::default(),
                },
            },
            rollout,
            min_ready_seconds: 0,
            paused: false,
            deletion: Deletion { order },
        },
        status: Default::default(),
    }
}

/// A MachineHealthCheck for each pool that asks for one.
fn health_checks(c: &Cluster) -> BTreeMap<String, MachineHealthCheck> {
    c.spec
        .workers
        .iter()
        .filter_map(|pool| {
            let hc = pool.health_check.as_ref()?;
            let name = deployment_name(&c.metadata.name, &pool.name);
            let selector = LabelSelector {
                match_labels: BTreeMap::from([
                    (CLUSTER_NAME.to_string(), c.metadata.name.clone()),
                    (POOL.to_string(), pool.name.clone()),
                ]),
            };
            Some((
                name.clone(),
                Resource {
                    metadata: ObjectMeta {
                        name,
                        namespace: c.metadata.namespace.clone(),
                        owner_references: vec![owner_ref(Kind::Cluster, &c.metadata)],
                        ..ObjectMeta::default()
                    },
                    spec: MachineHealthCheckSpec {
                        cluster_name: c.metadata.name.clone(),
                        selector,
                        checks: hc.checks.clone(),
                        remediation: hc.remediation.clone(),
                    },
                    status: Default::default(),
                },
            ))
        })
        .collect()
}

/// Status from the MachineDeployments as they are now.
fn report(c: &mut Cluster, tree: &Tree, wanted: &BTreeMap<String, MachineDeployment>, ctx: &Ctx) {
    let now = ctx.now;
    let cp_name = deployment_name(&c.metadata.name, CONTROL_PLANE_POOL);
    let live = |name: &str| {
        tree.get(Kind::MachineDeployment, name)
            .filter(|s| !s.is_deleting())
            .and_then(|s| s.object.as_machine_deployment())
    };
    let (mut cp, mut workers) = (
        capstan_model::ReplicaSummary::default(),
        capstan_model::ReplicaSummary::default(),
    );
    let mut all_ready = true;
    for (name, want) in wanted {
        let got = live(name);
        let ready = got.map_or(0, |m| m.status.ready_replicas);
        // An autoscaled pool wants what its autoscaler set, within the bounds.
        let desired = match (pool_autoscaling(c, name), got) {
            (Some((min, max)), Some(m)) => m.spec.replicas.clamp(min, max),
            _ => want.spec.replicas,
        };
        let up_to_date = got.is_some_and(|m| {
            m.status.observed_generation.is_some()
                && m.status.observed_generation == m.metadata.generation
                && m.spec.replicas == desired
                && m.status.conditions.is_true(condition::READY)
        });
        all_ready &= up_to_date && ready == desired;
        let summary = if *name == cp_name {
            &mut cp
        } else {
            &mut workers
        };
        summary.desired += desired;
        summary.ready += ready;
    }
    let missing: BTreeSet<&str> = [&c.spec.control_plane.machine_class]
        .into_iter()
        .chain(c.spec.workers.iter().map(|w| &w.machine_class))
        .filter(|class| tree.live_class(class).is_none())
        .map(String::as_str)
        .collect();

    let quorum = cp.desired / 2 + 1;
    let cond = &mut c.status.conditions;
    set_flag(
        cond,
        condition::CONTROL_PLANE_AVAILABLE,
        cp.ready >= quorum,
        "ControlPlaneAvailable",
        format!(
            "{} of {} control plane machines ready (quorum {quorum})",
            cp.ready, cp.desired
        ),
        now,
    );
    set_flag(
        cond,
        condition::WORKERS_AVAILABLE,
        workers.ready >= workers.desired,
        "WorkersAvailable",
        format!(
            "{} of {} worker machines ready",
            workers.ready, workers.desired
        ),
        now,
    );
    if missing.is_empty() {
        set_flag(
            cond,
            condition::READY,
            all_ready,
            "Ready",
            format!(
                "control plane {}/{}, workers {}/{} ready",
                cp.ready, cp.desired, workers.ready, workers.desired
            ),
            now,
        );
    } else {
        cond.set_false(
            condition::READY,
            "MachineClassNotFound",
            format!(
                "MachineClass {} not found in namespace {}",
                missing.into_iter().collect::<Vec<_>>().join(", "),
                c.metadata.namespace
            ),
            now,
        );
    }
    c.status.phase = if cond.is_true(condition::READY) || cp.ready >= quorum {
        ClusterPhase::Provisioned
    } else {
        ClusterPhase::Provisioning
    };
    c.status.control_plane = cp;
    c.status.workers = workers;
}
