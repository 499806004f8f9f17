//! Whole-number fields: replica counts, a worker pool's autoscaling bounds, and the
//! non-negative seconds, counts and percentages several kinds share.

use super::Errors;
use super::limits::MAX_REPLICAS;
use crate::kinds::{Autoscaling, IntOrPercent};

pub(super) fn replicas(v: &mut Errors, path: &str, n: i32) {
    if n < 0 {
        v.push(
            path,
            format!("must be 0 or more, found {n}"),
            "set a count of 0 or more",
        );
    } else if n > MAX_REPLICAS {
        v.push(
            path,
            format!("{n} is too large: expected a whole number from 0 to {MAX_REPLICAS}"),
            format!("set a count from 0 to {MAX_REPLICAS}; split larger fleets into several pools"),
        );
    }
}

pub(super) fn non_negative(v: &mut Errors, path: &str, n: i32, hint: &str) {
    if n < 0 {
        v.push(path, format!("must be 0 or more, found {n}"), hint);
    }
}

pub(super) fn non_negative_count(v: &mut Errors, path: &str, value: Option<IntOrPercent>) {
    if let Some(IntOrPercent::Int(n)) = value {
        non_negative(
            v,
            path,
            n,
            "set a count of 0 or more, or a percentage such as \"25%\"",
        );
    }
}

pub(super) fn autoscaling(v: &mut Errors, at: &str, scaling: &Autoscaling, replicas: Option<i32>) {
    let (min, max) = (scaling.min, scaling.max);
    let base = format!("{at}.autoscaling");
    non_negative(v, &format!("{base}.min"), min, "set a count of 0 or more");
    if max < 1 {
        v.push(
            format!("{base}.max"),
            format!("must be 1 or more, found {max}"),
            "set the largest size the autoscaler may grow the pool to",
        );
    } else if max > MAX_REPLICAS {
        v.push(
            format!("{base}.max"),
            format!("{max} is too large: expected a whole number from 1 to {MAX_REPLICAS}"),
            format!("set at most {MAX_REPLICAS}"),
        );
    }
    if min > max {
        v.push(
            format!("{base}.min"),
            format!("{min} is more than max ({max})"),
            "set min <= max",
        );
    }
    if let Some(n) = replicas
        && min <= max
        && !(min..=max).contains(&n)
    {
        v.push(
            format!("{at}.replicas"),
            format!("{n} is outside autoscaling's range [{min}, {max}]"),
            "set replicas within [min, max], or leave it out to start at min",
        );
    }
}
