//! `capstan get KIND [NAME]`: objects as a table, or as JSON/YAML for scripts.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use capstan_model::meta::condition;
use capstan_model::{ConditionStatus, Kind, Object, StoredObject, Timestamp};
use capstan_reconcile::Tree;

use crate::kinds;
use crate::output::{age, table};
use crate::target::Target;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Wide,
    Yaml,
    Json,
    Name,
}

pub struct Options {
    pub kind: String,
    pub name: Option<String>,
    pub namespace: String,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub output: Option<Format>,
    pub watch: bool,
    /// With `watch`: stop after this long (default: until interrupted).
    pub watch_for: Option<std::time::Duration>,
}

/// A label selector as kubectl writes it: `k=v`, `k==v`, `k!=v`, `k`, `!k`, comma-separated.
#[derive(Debug)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

fn parse_selector(s: &str) -> anyhow::Result<Vec<Requirement>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some((k, v)) = p.split_once("!=") {
                Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Ok(Requirement::Equals(k.trim().into(), v.trim().into()))
            } else if let Some(k) = p.strip_prefix('!') {
                Ok(Requirement::Absent(k.trim().into()))
            } else if p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                Ok(Requirement::Exists(p.into()))
            } else {
                bail!(
                    "-l {s:?}: {p:?} is not a requirement: write key=value, key!=value, key or !key"
                )
            }
        })
        .collect()
}

fn matches(requirements: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    requirements.iter().all(|r| match r {
        Requirement::Equals(k, v) => labels.get(k) == Some(v),
        Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::Absent(k) => !labels.contains_key(k),
    })
}

/// The objects `options` select, sorted by namespace, cluster and name.
fn select<'a>(
    trees: &'a [Tree],
    kind: Kind,
    options: &Options,
    requirements: &[Requirement],
) -> Vec<&'a StoredObject> {
    let mut found: Vec<&StoredObject> = trees
        .iter()
        .flat_map(|t| t.of_kind(kind))
        .filter(|s| options.all_namespaces || s.object.metadata().namespace == options.namespace)
        .filter(|s| options.name.as_deref().is_none_or(|n| s.object.name() == n))
        .filter(|s| matches(requirements, &s.object.metadata().labels))
        .collect();
    found.sort_by(|a, b| {
        let key = |s: &StoredObject| {
            (
                s.object.metadata().namespace.clone(),
                s.object.cluster_name().to_string(),
                s.object.name().to_string(),
            )
        };
        key(a).cmp(&key(b))
    });
    found
}

pub async fn run(target: &Target, options: Options) -> anyhow::Result<ExitCode> {
    let kind = kinds::parse(&options.kind)?;
    let requirements = match &options.selector {
        Some(s) => parse_selector(s)?,
        None => Vec::new(),
    };
    let trees = target.trees().await?;
    let found = select(&trees, kind, &options, &requirements);
    if found.is_empty()
        && let Some(name) = &options.name
    {
        bail!(
            "{kind} {name:?} not found in namespace {:?}: list them with `capstan get {} -n {}`",
            options.namespace,
            kinds::NAMES
                .iter()
                .find(|(k, _, _)| *k == kind)
                .map_or("", |(_, plural, _)| plural),
            options.namespace
        );
    }
    let now = target.now();
    match options.output {
        Some(Format::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&as_document(&found, options.name.is_some()))
                    .context("printing JSON")?
            );
        }
        Some(Format::Yaml) => {
            let yaml = serde_saphyr::to_string(&as_document(&found, options.name.is_some()))
                .context("printing YAML")?;
            print!("{yaml}");
        }
        Some(Format::Name) => {
            for s in &found {
                println!("{}/{}", kinds::lower(kind), s.object.name());
            }
        }
        format => {
            let wide = format == Some(Format::Wide);
            if found.is_empty() {
                eprintln!(
                    "No {} found in {}.",
                    kind,
                    if options.all_namespaces {
                        "any namespace".to_string()
                    } else {
                        format!("namespace {:?}", options.namespace)
                    }
                );
            } else {
                print!(
                    "{}",
                    render(kind, &found, now, wide, options.all_namespaces, true)
                );
            }
            if options.watch {
                return watch(target, kind, &options, &requirements, &found, wide).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `-w`: polls and prints a row for every object that changed, appeared or went away.
async fn watch(
    target: &Target,
    kind: Kind,
    options: &Options,
    requirements: &[Requirement],
    first: &[&StoredObject],
    wide: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let interval = target.poll_interval();
    if interval.is_zero() {
        // The local control plane converged before this command started and nothing
        // runs until the next one: there is nothing more to watch.
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let mut last: BTreeMap<String, String> = first
        .iter()
        .map(|s| {
            (
                row_key(s),
                render(
                    kind,
                    &[s],
                    target.now(),
                    wide,
                    options.all_namespaces,
                    false,
                ),
            )
        })
        .collect();
    loop {
        if options
            .watch_for
            .is_some_and(|limit| started.elapsed() >= limit)
        {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(interval).await;
        let trees = target.trees().await?;
        let now = target.now();
        let found = select(&trees, kind, options, requirements);
        let mut seen = BTreeMap::new();
        for s in &found {
            let line = render(kind, &[s], now, wide, options.all_namespaces, false);
            // The age column changes every second: compare rows without it.
            let key = row_key(s);
            let changed = last
                .get(&key)
                .is_none_or(|old| without_age(old) != without_age(&line));
            if changed {
                print!("{line}");
            }
            seen.insert(key, line);
        }
        for (key, line) in &last {
            if !seen.contains_key(key) {
                println!("{} (deleted)", line.trim_end());
            }
        }
        let _ = std::io::stdout().flush();
        last = seen;
    }
}

fn row_key(s: &StoredObject) -> String {
    format!(
        "{}/{}/{}",
        s.object.metadata().namespace,
        s.object.cluster_name(),
        s.object.name()
    )
}

fn without_age(line: &str) -> String {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    words.pop();
    words.join(" ")
}

/// One object alone, or a `List` with `items` for several, as kubectl prints them.
fn as_document(found: &[&StoredObject], one: bool) -> serde_json::Value {
    match found {
        [s] if one => s.object.to_json(),
        many => serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": many.iter().map(|s| s.object.to_json()).collect::<Vec<_>>(),
        }),
    }
}

/// The table for `kind`, with NAMESPACE first under `-A`.
pub fn render(
    kind: Kind,
    found: &[&StoredObject],
    now: Timestamp,
    wide: bool,
    namespaces: bool,
    header: bool,
) -> String {
    let mut rows = Vec::new();
    if header {
        let mut h: Vec<String> = headers(kind, wide).iter().map(|s| s.to_string()).collect();
        if namespaces {
            h.insert(0, "NAMESPACE".into());
        }
        rows.push(h);
    }
    for s in found {
        let mut row = cells(s, now, wide);
        if namespaces {
            row.insert(0, s.object.metadata().namespace.clone());
        }
        rows.push(row);
    }
    table(&rows)
}

fn headers(kind: Kind, wide: bool) -> Vec<&'static str> {
    let (mut base, extra): (Vec<&str>, Vec<&str>) = match kind {
        Kind::Cluster => (
            vec![
                "NAME",
                "PHASE",
                "CONTROL-PLANE",
                "WORKERS",
                "READY",
                "VERSION",
            ],
            vec!["PAUSED"],
        ),
        Kind::MachineClass => (
            vec!["NAME", "CLUSTER", "IMAGE", "INSTANCE-TYPES"],
            vec!["SUBNETS", "MARKET"],
        ),
        Kind::MachineDeployment => (
            vec![
                "NAME",
                "CLUSTER",
                "REPLICAS",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "PHASE",
            ],
            vec!["CLASS", "VERSION", "PAUSED"],
        ),
        Kind::MachineSet => (
            vec!["NAME", "CLUSTER", "REPLICAS", "READY", "AVAILABLE"],
            vec!["CLASS", "OWNER"],
        ),
        Kind::Machine => (
            vec![
                "NAME", "CLUSTER", "PHASE", "INSTANCE", "TYPE", "SUBNET", "NODE",
            ],
            vec!["ROLE", "VERSION", "INTERNAL-IP", "OWNER"],
        ),
        Kind::MachineHealthCheck => (
            vec!["NAME", "CLUSTER", "EXPECTED", "HEALTHY"],
            vec!["REMEDIATIONS-ALLOWED"],
        ),
    };
    base.push("AGE");
    if wide {
        base.extend(extra);
    }
    base
}

fn ready(o: &Object) -> String {
    match o.conditions().get(condition::READY).map(|c| c.status) {
        Some(ConditionStatus::True) => "True",
        Some(ConditionStatus::False) => "False",
        Some(ConditionStatus::Unknown) => "Unknown",
        None => "-",
    }
    .to_string()
}

fn owner(o: &Object) -> String {
    o.metadata()
        .controller()
        .map_or("-".to_string(), |c| format!("{}/{}", c.kind, c.name))
}

fn dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

fn cells(s: &StoredObject, now: Timestamp, wide: bool) -> Vec<String> {
    let o = &s.object;
    let name = o.name().to_string();
    let cluster = o.cluster_name().to_string();
    let created = age(o.metadata().creation_timestamp, now);
    let deleting = s.is_deleting();
    let phase = |p: String| if deleting { "Deleting".to_string() } else { p };
    let (mut base, extra) = match o {
        Object::Cluster(c) => (
            vec![
                name,
                phase(format!("{:?}", c.status.phase)),
                format!(
                    "{}/{}",
                    c.status.control_plane.ready, c.status.control_plane.desired
                ),
                format!("{}/{}", c.status.workers.ready, c.status.workers.desired),
                ready(o),
                c.spec.version.clone(),
            ],
            vec![c.spec.paused.to_string()],
        ),
        Object::MachineClass(mc) => (
            vec![
                name,
                cluster,
                mc.spec.image_id.clone(),
                mc.spec.instance_types.join(","),
            ],
            vec![
                mc.spec.subnets.join(","),
                format!("{:?}", mc.spec.market.market_type),
            ],
        ),
        Object::MachineDeployment(d) => (
            vec![
                name,
                cluster,
                d.spec.replicas.to_string(),
                d.status.ready_replicas.to_string(),
                d.status.up_to_date_replicas.to_string(),
                d.status.available_replicas.to_string(),
                phase(format!("{:?}", d.status.phase)),
            ],
            vec![
                d.spec.template.spec.machine_class.clone(),
                d.spec.template.spec.version.clone(),
                d.spec.paused.to_string(),
            ],
        ),
        Object::MachineSet(ms) => (
            vec![
                name,
                cluster,
                ms.spec.replicas.to_string(),
                ms.status.ready_replicas.to_string(),
                ms.status.available_replicas.to_string(),
            ],
            vec![ms.spec.template.spec.machine_class.clone(), owner(o)],
        ),
        Object::Machine(m) => (
            vec![
                name,
                cluster,
                phase(format!("{:?}", m.status.phase)),
                dash(m.status.instance_id.as_deref()),
                dash(m.status.instance_type.as_deref()),
                dash(Some(m.spec.failure_domain.as_str())),
                dash(m.status.node_ref.as_ref().map(|n| n.name.as_str())),
            ],
            vec![
                m.spec.role.as_str().to_string(),
                m.spec.version.clone(),
                dash(
                    m.status
                        .addresses
                        .iter()
                        .find(|a| a.address_type == "InternalIP")
                        .map(|a| a.address.as_str()),
                ),
                owner(o),
            ],
        ),
        Object::MachineHealthCheck(h) => (
            vec![
                name,
                cluster,
                h.status.expected_machines.to_string(),
                h.status.current_healthy.to_string(),
            ],
            vec![h.status.remediations_allowed.to_string()],
        ),
    };
    base.push(created);
    if wide {
        base.extend(extra);
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_like_kubectl() {
        let labels: BTreeMap<String, String> = [("pool".to_string(), "workers".to_string())].into();
        let ok = |s: &str| parse_selector(s).map(|r| matches(&r, &labels)).ok();
        assert_eq!(ok("pool=workers"), Some(true));
        assert_eq!(ok("pool==workers"), Some(true));
        assert_eq!(ok("pool!=workers"), Some(false));
        assert_eq!(ok("pool"), Some(true));
        assert_eq!(ok("!pool"), Some(false));
        assert_eq!(ok("pool=x,pool"), Some(false));
        assert!(parse_selector("a b").is_err());
    }
}
