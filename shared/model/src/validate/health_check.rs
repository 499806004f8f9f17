//! Health check rules, for a MachineHealthCheck and a worker pool's `healthCheck`:
//! what makes a Machine unhealthy, and when remediation may act.

use super::Errors;
use super::counts::{non_negative, non_negative_count};
use crate::kinds::{HealthCheckChecks, HealthCheckRemediation};

pub(super) fn health_checks(v: &mut Errors, base: &str, checks: &HealthCheckChecks) {
    non_negative(
        v,
        &format!("{base}.nodeStartupTimeoutSeconds"),
        checks.node_startup_timeout_seconds,
        "set seconds, 0 or more; 0 disables the startup check",
    );
    for (field, list) in [
        (
            "unhealthyMachineConditions",
            &checks.unhealthy_machine_conditions,
        ),
        ("unhealthyNodeConditions", &checks.unhealthy_node_conditions),
    ] {
        for (i, condition) in list.iter().enumerate() {
            let at = format!("{base}.{field}[{i}]");
            if condition.type_.trim().is_empty() {
                v.push(
                    format!("{at}.type"),
                    "is required",
                    "name a condition type, e.g. Ready",
                );
            }
            non_negative(
                v,
                &format!("{at}.timeoutSeconds"),
                condition.timeout_seconds,
                "set how many seconds the condition may hold before the Machine is unhealthy, 0 or more",
            );
        }
    }
}

pub(super) fn remediation(v: &mut Errors, base: &str, remediation: &HealthCheckRemediation) {
    let trigger = &remediation.trigger_if;
    let at = format!("{base}.triggerIf");
    if trigger.unhealthy_less_than_or_equal_to.is_some() && trigger.unhealthy_in_range.is_some() {
        v.push(
            &at,
            "sets both unhealthyLessThanOrEqualTo and unhealthyInRange",
            "keep one of the two",
        );
    }
    non_negative_count(
        v,
        &format!("{at}.unhealthyLessThanOrEqualTo"),
        trigger.unhealthy_less_than_or_equal_to,
    );
    if let Some(range) = &trigger.unhealthy_in_range
        && parse_range(range).is_none()
    {
        v.push(
            format!("{at}.unhealthyInRange"),
            format!("{range:?} is not a range of the form [min-max] with min <= max"),
            "write it like \"[1-3]\"",
        );
    }
    non_negative_count(v, &format!("{base}.maxInFlight"), remediation.max_in_flight);
}

/// Parses Cluster API's `"[a-b]"` with 0 <= a <= b.
pub fn parse_range(s: &str) -> Option<(u32, u32)> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once('-')?;
    let digits = |t: &str| {
        let t = t.trim();
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<u32>().ok())
            .flatten()
    };
    let (a, b) = (digits(a)?, digits(b)?);
    (a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_format() {
        assert_eq!(parse_range("[1-3]"), Some((1, 3)));
        for bad in ["1-3", "[3-1]", "[-1-3]", "[a-b]", "[1-]"] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
