//! A copy of a remote installation's control plane, in memory, for `apply --dry-run`.

use crate::target::{Local, Remote};

pub async fn of(remote: &Remote) -> anyhow::Result<Local> {
    anyhow::bail!(
        "apply --dry-run against {:?} is not built yet: plan on the local context",
        remote.context
    )
}
