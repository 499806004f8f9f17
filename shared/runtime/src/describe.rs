//! `capstan describe` / the tree `capstan up` prints, like `clusterctl describe
//! cluster`, and the check that says whether a cluster has converged.

use capstan_model::meta::condition;
use capstan_model::{ConditionStatus, Kind, MachinePhase, Object, StoredObject};
use capstan_reconcile::Tree;
use capstan_reconcile::conditions::NODE_READY;

struct Row {
    name: String,
    ready: String,
    phase: String,
    detail: String,
}

/// Renders a cluster's tree: each object with its Ready condition, phase and, for
/// Machines, the instance.
pub fn render(tree: &Tree) -> String {
    let mut rows = vec![Row {
        name: "NAME".into(),
        ready: "READY".into(),
        phase: "PHASE".into(),
        detail: "INSTANCE / REASON".into(),
    }];
    for cluster in tree.of_kind(Kind::Cluster) {
        rows.push(row("", cluster));
        let children: Vec<&StoredObject> = tree
            .all()
            .filter(|s| s.object.kind() != Kind::Cluster)
            .filter(|s| {
                s.object
                    .metadata()
                    .controller()
                    .is_none_or(|o| o.kind == Kind::Cluster)
            })
            .collect();
        walk(tree, &children, "", &mut rows);
    }
    let w = |f: fn(&Row) -> &String| rows.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
    let (wn, wr, wp) = (w(|r| &r.name), w(|r| &r.ready), w(|r| &r.phase));
    let mut out = String::new();
    for r in &rows {
        let line = format!(
            "{:wn$}  {:wr$}  {:wp$}  {}",
            r.name, r.ready, r.phase, r.detail
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn walk(tree: &Tree, children: &[&StoredObject], indent: &str, rows: &mut Vec<Row>) {
    for (i, child) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        let branch = if last { "└─" } else { "├─" };
        rows.push(row(&format!("{indent}{branch}"), child));
        let grandchildren: Vec<&StoredObject> = match child.object.kind() {
            Kind::MachineDeployment => tree
                .owned_by(
                    Kind::MachineSet,
                    Kind::MachineDeployment,
                    child.object.name(),
                )
                .collect(),
            Kind::MachineSet => tree
                .owned_by(Kind::Machine, Kind::MachineSet, child.object.name())
                .collect(),
            _ => Vec::new(),
        };
        let next_indent = format!("{indent}{}", if last { "  " } else { "│ " });
        walk(tree, &grandchildren, &next_indent, rows);
    }
}

fn row(prefix: &str, s: &StoredObject) -> Row {
    let o = &s.object;
    let ready = match o.conditions().get(condition::READY) {
        Some(c) => match c.status {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        },
        None => "-",
    };
    let phase = if s.is_deleting() {
        "Deleting".to_string()
    } else {
        match o {
            Object::Cluster(c) => format!("{:?}", c.status.phase),
            Object::MachineDeployment(d) => format!("{:?}", d.status.phase),
            Object::Machine(m) => format!("{:?}", m.status.phase),
            _ => String::new(),
        }
    };
    let not_ready_reason = o
        .conditions()
        .get(condition::READY)
        .filter(|c| c.status != ConditionStatus::True)
        .map(|c| format!("{}: {}", c.reason, c.message));
    let mut detail = match o {
        Object::Machine(m) => match &m.status.instance_id {
            Some(id) => {
                let instance = format!(
                    "{id} ({}, {}, {})",
                    m.status.instance_type.as_deref().unwrap_or("?"),
                    m.spec.failure_domain,
                    m.status.instance_state.map_or("?", |s| s.as_str())
                );
                // With access declared: the Node, and its readiness, or since when
                // the Machine waits for it.
                match (&m.status.node_ref, m.status.conditions.get(NODE_READY)) {
                    (Some(node), Some(ready)) => format!(
                        "{instance} node {} {}",
                        node.name,
                        if ready.status == ConditionStatus::True {
                            "Ready".to_string()
                        } else {
                            format!("NotReady ({})", ready.reason)
                        }
                    ),
                    (None, Some(waiting))
                        if matches!(waiting.reason.as_str(), "WaitingForNode" | "NodeNotFound") =>
                    {
                        format!(
                            "{instance} no node: {} (since {})",
                            waiting.message, waiting.last_transition_time
                        )
                    }
                    _ => instance,
                }
            }
            None => not_ready_reason.unwrap_or_default(),
        },
        Object::MachineDeployment(d) => match d.status.draining_replicas {
            0 => format!("{}/{} ready", d.status.ready_replicas, d.spec.replicas),
            n => format!(
                "{}/{} ready, {n} draining",
                d.status.ready_replicas, d.spec.replicas
            ),
        },
        Object::MachineSet(ms) => {
            format!("{}/{} ready", ms.status.ready_replicas, ms.spec.replicas)
        }
        Object::Cluster(c) => format!(
            "control plane {}/{}, workers {}/{}; {}",
            c.status.control_plane.ready,
            c.status.control_plane.desired,
            c.status.workers.ready,
            c.status.workers.desired,
            match &c.spec.access {
                Some(a) => match (&a.eks, &a.kubeconfig) {
                    (Some(eks), _) =>
                        format!("nodes seen through EKS cluster {}", eks.cluster_name),
                    (None, Some(k)) =>
                        format!("nodes seen through the kubeconfig in {}", k.secret_arn),
                    (None, None) => "spec.access names no way in".to_string(),
                },
                None => "no access declared: instances only, nodes not seen".to_string(),
            }
        ),
        Object::MachineHealthCheck(h) => format!(
            "{}/{} healthy",
            h.status.current_healthy, h.status.expected_machines
        ),
        _ => not_ready_reason.unwrap_or_default(),
    };
    // A Machine leaving its cluster: the step, since when, and what it waits for
    // (blocking pods and their budgets, volumes, hooks).
    if let Object::Machine(m) = o
        && m.status.deletion.is_some()
        && let Some(c) = m.status.conditions.get(condition::DELETING)
    {
        detail.push_str(&format!("; {}: {}", c.reason, c.message));
    }
    // An autoscaled pool: what the autoscaler last decided and why.
    if let Object::MachineDeployment(d) = o
        && let Some(c) = d
            .status
            .conditions
            .get(capstan_reconcile::autoscale_pools::AUTOSCALING)
    {
        detail.push_str(&format!("; autoscaling: {}", c.message));
    }
    Row {
        name: format!("{prefix}{}/{}", o.kind(), o.name()),
        ready: ready.to_string(),
        phase,
        detail,
    }
}

/// What keeps a cluster's tree from having converged, one line each; empty when every
/// object has caught up with its spec, is Ready, and every Machine is Running.
pub fn not_converged(tree: &Tree) -> Vec<String> {
    let mut problems = Vec::new();
    for s in tree.all() {
        let o = &s.object;
        let name = format!("{}/{}", o.kind(), o.name());
        if s.is_deleting() {
            problems.push(format!("{name} is still being deleted"));
            continue;
        }
        if s.is_new() || s.spec_changed() {
            problems.push(format!(
                "{name} has not been reconciled since its last change"
            ));
            continue;
        }
        let ready = o.conditions().get(condition::READY);
        if let Object::Machine(m) = o
            && m.status.phase != MachinePhase::Running
        {
            let why = ready
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            problems.push(format!("{name} is {:?} ({why})", m.status.phase));
            continue;
        }
        if let Some(c) = ready.filter(|c| c.status != ConditionStatus::True) {
            problems.push(format!("{name} is not Ready ({}: {})", c.reason, c.message));
        }
    }
    problems
}
