//! A MachineClass has no children of its own: it is taken in, reported valid, and
//! released when deleted (Machines carry their resolved launch spec, so they do not
//! need the class to be torn down).

use capstan_model::MachineClass;
use capstan_model::meta::condition;

use crate::lifecycle::{Ctx, Decision};

pub fn decide(class: &mut MachineClass, ctx: &Ctx, deleting: bool) -> Decision {
    if deleting {
        return Decision {
            remove: true,
            ..Decision::default()
        };
    }
    class.status.conditions.set_true(
        condition::READY,
        "Valid",
        format!(
            "launches {} in {} subnet(s)",
            class.spec.instance_types.join(" or "),
            class.spec.subnets.len()
        ),
        ctx.now,
    );
    Decision::default()
}
