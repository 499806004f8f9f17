//! Rolling-update strategy: surge and unavailability, which may not both be zero or
//! the rollout could never make progress.

use super::Errors;
use super::counts::non_negative_count;
use crate::kinds::{IntOrPercent, Rollout, RolloutStrategyType};

fn is_zero(value: IntOrPercent) -> bool {
    matches!(value, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
}

pub(super) fn rollout(v: &mut Errors, base: &str, rollout: &Rollout) {
    if rollout.strategy.strategy_type != RolloutStrategyType::RollingUpdate {
        return;
    }
    let at = format!("{base}.strategy.rollingUpdate");
    let update = &rollout.strategy.rolling_update;
    non_negative_count(v, &format!("{at}.maxSurge"), Some(update.max_surge));
    non_negative_count(
        v,
        &format!("{at}.maxUnavailable"),
        Some(update.max_unavailable),
    );
    // Cluster API (as Kubernetes Deployments) refuses a rolling update that can neither
    // add a Machine nor remove one: it could never make progress.
    if is_zero(update.max_surge) && is_zero(update.max_unavailable) {
        v.push(
            format!("{at}.maxUnavailable"),
            "may not be 0 when maxSurge is 0",
            "let the rollout add a Machine first with maxSurge: 1, or take one down first with maxUnavailable: 1",
        );
    }
}
