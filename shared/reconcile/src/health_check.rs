//! A MachineHealthCheck watches the Machines its selector picks and reports how many
//! are healthy.

use capstan_model::meta::condition;
use capstan_model::{Kind, MachineHealthCheck, StoredObject};

use crate::lifecycle::{Ctx, Decision};
use crate::tree::Tree;

pub fn decide(
    hc: &mut MachineHealthCheck,
    _stored: &StoredObject,
    tree: &Tree,
    ctx: &Ctx,
    deleting: bool,
) -> Decision {
    if deleting {
        return Decision {
            remove: true,
            ..Decision::default()
        };
    }
    let selected: Vec<_> = tree
        .of_kind(Kind::Machine)
        .filter(|s| !s.is_deleting())
        .filter_map(|s| s.object.as_machine())
        .filter(|m| {
            m.spec.cluster_name == hc.spec.cluster_name
                && hc.spec.selector.matches(&m.metadata.labels)
        })
        .collect();
    let healthy = selected
        .iter()
        .filter(|m| m.status.conditions.is_true(condition::READY))
        .count() as i32;
    let st = &mut hc.status;
    st.expected_machines = selected.len() as i32;
    st.current_healthy = healthy;
    st.conditions.set_true(
        condition::READY,
        "Monitoring",
        format!(
            "{healthy} of {} selected Machines are healthy",
            selected.len()
        ),
        ctx.now,
    );
    Decision::default()
}
