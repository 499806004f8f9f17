//! The `policy/v1` Eviction subresource and the disruption budgets it honours, as
//! kube-apiserver's `pkg/registry/core/pod/storage/eviction.go` does:
//!
//! - a pod that is already terminating, Pending, Succeeded or Failed is deleted without
//!   looking at budgets (`canIgnorePDB`);
//! - a pod matched by more than one budget is refused with a 500;
//! - a healthy pod (Running and Ready) may go when the budget has more healthy pods than
//!   it needs; an unhealthy one when it has at least as many (`IfHealthyBudget`, the
//!   default `unhealthyPodEvictionPolicy`);
//! - otherwise 429 with "Cannot evict pod as it would violate the pod's disruption
//!   budget." and the budget's own cause.
//!
//! The budget's status is computed at the call, where the disruption controller would
//! have done it moments before: never stale here. A budget's expected pod count is the
//! number of its matching pods that are not terminating or finished (for a Deployment,
//! its replicas once the ReplicaSet caught up).

use super::*;

impl IntOrPercent {
    /// The count for `of` pods, rounding up as the disruption controller does.
    fn resolve(self, of: u32) -> u32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => (u64::from(p) * u64::from(of)).div_ceil(100) as u32,
        }
    }
}

impl PodDisruptionBudget {
    pub(super) fn selects(&self, pod: &Pod) -> bool {
        pod.namespace == self.namespace
            && !self.selector.is_empty()
            && self
                .selector
                .iter()
                .all(|(k, v)| pod.labels.get(k) == Some(v))
    }

    /// Healthy pods needed out of `expected`.
    fn desired_healthy(&self, expected: u32) -> u32 {
        match self.budget {
            Budget::MinAvailable(n) => n.resolve(expected),
            Budget::MaxUnavailable(n) => expected.saturating_sub(n.resolve(expected)),
        }
    }
}

impl Cluster {
    /// (healthy pods, healthy pods needed) for `pdb`, leaving out `without` as if it
    /// were already terminating.
    pub(super) fn budget_health(
        &self,
        pdb: &PodDisruptionBudget,
        without: Option<&(String, String)>,
    ) -> (u32, u32) {
        let mut healthy = 0u32;
        let mut expected = 0u32;
        for (id, p) in &self.pods {
            if !pdb.selects(&p.pod) || matches!(p.pod.phase.as_str(), "Succeeded" | "Failed") {
                continue;
            }
            if p.pod.deleting_since.is_none() {
                expected += 1;
            }
            if Some(id) != without && self.healthy(&p.pod) {
                healthy += 1;
            }
        }
        (healthy, pdb.desired_healthy(expected))
    }
}

impl State {
    pub(super) fn evict(
        &mut self,
        key: &ClusterKey,
        namespace: &str,
        name: &str,
        grace_seconds: Option<i64>,
        now: Timestamp,
    ) -> Result<Eviction, WorkloadError> {
        let default_grace = self.config.default_grace;
        let id = (namespace.to_string(), name.to_string());
        let cluster = self.clusters.entry(key.clone()).or_default();
        let Some(p) = cluster.pods.get(&id) else {
            self.log(key, namespace, name, None, Eviction::Gone, Vec::new(), now);
            return Ok(Eviction::Gone);
        };
        let pod = p.pod.clone();
        let grace = match grace_seconds {
            Some(s) => Duration::from_secs(u64::try_from(s).unwrap_or(0)),
            None => p.grace.unwrap_or(default_grace),
        };
        let budgets: Vec<&PodDisruptionBudget> =
            cluster.pdbs.values().filter(|b| b.selects(&pod)).collect();
        let ignore_budgets = pod.deleting_since.is_some()
            || matches!(pod.phase.as_str(), "Pending" | "Succeeded" | "Failed");
        if !ignore_budgets && budgets.len() > 1 {
            return Err(WorkloadError::Unavailable(
                "This pod has more than one PodDisruptionBudget, which the eviction \
                 subresource does not support."
                    .into(),
            ));
        }
        if !ignore_budgets && let Some(pdb) = budgets.first() {
            let (healthy, desired) = cluster.budget_health(pdb, None);
            let allowed = if cluster.healthy(&pod) {
                healthy > desired
            } else {
                healthy >= desired
            };
            if !allowed {
                let message = format!(
                    "Cannot evict pod as it would violate the pod's disruption budget. \
                     The disruption budget {} needs {desired} healthy pods and has \
                     {healthy} currently",
                    pdb.name
                );
                let outcome = Eviction::Blocked { message };
                let node = pod.node_name.clone();
                self.log(key, namespace, name, node, outcome.clone(), Vec::new(), now);
                return Ok(outcome);
            }
        }
        // Which budgets had enough healthy pods before and would not after: the
        // invariant the refusals above keep.
        let before: Vec<(String, u32, u32)> = budgets
            .iter()
            .map(|b| {
                let (h, d) = cluster.budget_health(b, None);
                (b.name.clone(), h, d)
            })
            .collect();
        let broke: Vec<String> = budgets
            .iter()
            .zip(before)
            .filter(|(b, (_, h, d))| {
                let (after_h, _) = cluster.budget_health(b, Some(&id));
                h >= d && after_h < *d
            })
            .map(|(_, (name, _, _))| name)
            .collect();
        if let Some(p) = cluster.pods.get_mut(&id) {
            p.start_deleting(now, grace);
        }
        self.log(
            key,
            namespace,
            name,
            pod.node_name,
            Eviction::Started,
            broke,
            now,
        );
        self.settle(now);
        Ok(Eviction::Started)
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &mut self,
        key: &ClusterKey,
        namespace: &str,
        pod: &str,
        node: Option<String>,
        outcome: Eviction,
        broke_budgets: Vec<String>,
        at: Timestamp,
    ) {
        self.evictions.push(EvictionRecord {
            at,
            cluster: key.clone(),
            namespace: namespace.into(),
            pod: pod.into(),
            node,
            outcome,
            broke_budgets,
        });
    }
}
