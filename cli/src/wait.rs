//! Waiting, with progress: `wait --for`, `apply --wait`, `delete --wait` and
//! `rollout status` all poll the table until a check passes or time runs out.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use capstan_model::{ConditionStatus, Kind, ObjectKey};
use capstan_reconcile::Tree;

use crate::kinds;
use crate::target::Target;

/// How a wait ended.
pub enum Waited {
    Done,
    /// Time ran out; the last progress line says what was still missing.
    TimedOut(String),
}

impl Waited {
    /// Exit 0, or print what is missing and exit 2.
    pub fn exit(self, what: &str) -> ExitCode {
        match self {
            Waited::Done => ExitCode::SUCCESS,
            Waited::TimedOut(missing) => {
                eprintln!("error: timed out waiting for {what}: {missing}");
                ExitCode::from(2)
            }
        }
    }
}

/// Polls until `check` returns Ok, printing each new progress line (what `check`
/// returned as Err) with the time waited so far. On the local control plane, which
/// converges before a command returns, one look decides.
pub async fn until(
    target: &Target,
    timeout: Duration,
    mut check: impl FnMut(&[Tree]) -> Result<(), String>,
) -> anyhow::Result<Waited> {
    let started = Instant::now();
    let interval = target.poll_interval();
    let mut last = String::new();
    loop {
        let trees = target.trees().await?;
        let progress = match check(&trees) {
            Ok(()) => return Ok(Waited::Done),
            Err(progress) => progress,
        };
        if progress != last {
            println!("[{:>5.1}s] {progress}", started.elapsed().as_secs_f64());
            let _ = std::io::stdout().flush();
            last = progress;
        }
        if interval.is_zero() || started.elapsed() + interval > timeout {
            return Ok(Waited::TimedOut(last));
        }
        tokio::time::sleep(interval).await;
    }
}

/// Every object of the clusters `keys` belong to has converged (reconciled, Ready,
/// every Machine Running), or, for a key whose cluster is gone, nothing is left.
pub fn converged(keys: &[ObjectKey]) -> impl FnMut(&[Tree]) -> Result<(), String> + '_ {
    move |trees| {
        let mut problems = Vec::new();
        for tree in trees {
            let Some(any) = tree.all().next() else {
                continue;
            };
            let (ns, cluster) = (any.object.metadata().namespace.clone(), any.key().cluster);
            if keys
                .iter()
                .any(|k| k.namespace == ns && k.cluster == cluster)
            {
                problems.extend(capstan_runtime::describe::not_converged(tree));
            }
        }
        match problems.as_slice() {
            [] => Ok(()),
            [one] => Err(one.clone()),
            [first, rest @ ..] => Err(format!("{first} (and {} more)", rest.len())),
        }
    }
}

/// Every object in `keys` is gone from the table, observed item and all.
pub fn gone(keys: &[ObjectKey]) -> impl FnMut(&[Tree]) -> Result<(), String> + '_ {
    move |trees| {
        let left: Vec<String> = keys
            .iter()
            .filter(|k| {
                trees
                    .iter()
                    .filter_map(|t| t.get(k.kind, &k.name))
                    .any(|s| s.key() == **k)
            })
            .map(|k| format!("{}/{}", k.kind, k.name))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("still deleting: {}", left.join(", ")))
        }
    }
}

/// What `--for` asks: `condition=Type[=Status]` or `delete`.
pub enum For {
    Condition(String, ConditionStatus),
    Delete,
}

pub fn parse_for(s: &str) -> anyhow::Result<For> {
    if s == "delete" {
        return Ok(For::Delete);
    }
    let Some(rest) = s.strip_prefix("condition=") else {
        bail!("--for={s}: write --for=condition=Ready (or condition=Type=False) or --for=delete");
    };
    let (type_, status) = match rest.split_once('=') {
        Some((t, v)) => (t, v),
        None => (rest, "True"),
    };
    let status = match status.to_ascii_lowercase().as_str() {
        "true" => ConditionStatus::True,
        "false" => ConditionStatus::False,
        "unknown" => ConditionStatus::Unknown,
        _ => bail!("--for={s}: a condition's status is True, False or Unknown"),
    };
    if type_.is_empty() {
        bail!("--for={s}: name the condition, e.g. condition=Ready");
    }
    Ok(For::Condition(type_.to_string(), status))
}

/// `capstan wait --for=... KIND/NAME`.
pub async fn run(
    target: &Target,
    what: &[String],
    wait_for: &str,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let (kind, name) = kinds::kind_and_name(what)?;
    let kind: Kind = kinds::parse(&kind)?;
    let wait_for = parse_for(wait_for)?;
    let trees = target.trees().await?;
    let label = format!("{kind}/{name}");
    match wait_for {
        For::Delete => {
            let key = match kinds::find(&trees, kind, &name, namespace, None) {
                Ok(s) => s.key(),
                Err(_) => {
                    println!("{label} deleted");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let keys = [key];
            let waited = until(target, timeout, gone(&keys)).await?;
            if matches!(waited, Waited::Done) {
                println!("{label} deleted");
            }
            Ok(waited.exit(&format!("{label} to be deleted")))
        }
        For::Condition(type_, status) => {
            let key = kinds::find(&trees, kind, &name, namespace, None)?.key();
            let waited = until(target, timeout, |trees| {
                let Some(s) = trees
                    .iter()
                    .filter_map(|t| t.get(key.kind, &key.name))
                    .find(|s| s.key() == key)
                else {
                    return Err(format!("{label} is gone"));
                };
                match s.object.conditions().get(&type_) {
                    Some(c) if c.status == status && !s.spec_changed() => Ok(()),
                    Some(c) => Err(format!(
                        "{label}: {type_}={:?} ({}: {})",
                        c.status, c.reason, c.message
                    )),
                    None => Err(format!("{label} has no {type_} condition yet")),
                }
            })
            .await?;
            if matches!(waited, Waited::Done) {
                println!("{label} condition met");
            }
            Ok(waited.exit(&format!("{label} to be {type_}={status:?}")))
        }
    }
}
