//! A hostile (or merely careless) writer with table access: raw PutItems that no
//! `capstan apply` would make. Each write is one of
//! - a node agent's or a newer function's status fields on a live Machine: unknown
//!   fields, a condition with `observedGeneration`, a condition with a bad status;
//! - an invalid desired Machine (IMDSv1, an unencrypted root volume, a secret in user
//!   data, a `capstan.dev/` tag);
//! - a forged observed item in another namespace naming one of our instances and its
//!   Machine's uid;
//! - an oversize value (300 KB) in a status item of its own;
//! - a desired item in a partition whose cluster disagrees with `spec.clusterName`.
//!
//! Everything it creates is named `hostile-…` (or lives in the `intruder` namespace),
//! so the invariants can tell: nothing is launched for it, and no instance it names
//! is stopped or terminated while its Machine still wants it.

use capstan_model::item::{AttrValue, Item, ItemKey, PK, SK, item_key};
use capstan_model::{Timestamp, labels};
use capstan_runtime::{Expect, Store};

use crate::rng::Rng;
use crate::store::MemStore;

/// The prefix of every object the hostile writer creates.
pub const HOSTILE_PREFIX: &str = "hostile-";
/// The namespace forged items are written into.
pub const INTRUDER_NAMESPACE: &str = "intruder";

/// A Machine whose instance a hostile write named: the instance must stay until the
/// Machine itself is deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Victim {
    /// The Machine's partition and name.
    pub pk: String,
    pub machine: String,
    pub instance_id: String,
}

/// What one hostile write did, for the trace; and the Machine it took aim at.
pub struct HostileWrite {
    pub what: String,
    pub victim: Option<Victim>,
}

/// True for keys the hostile writer made (not the workload's).
pub fn is_hostile(key: &ItemKey) -> bool {
    // A requeue marker is as hostile as the object it keeps the requeue of.
    let pk = key.pk.strip_suffix("#requeue").unwrap_or(&key.pk);
    let sk = key
        .sk
        .strip_prefix(capstan_runtime::requeue::MARKER_PREFIX)
        .unwrap_or(&key.sk);
    pk.starts_with(&format!("{INTRUDER_NAMESPACE}#"))
        || pk.ends_with("#elsewhere")
        || sk
            .split('#')
            .nth(1)
            .is_some_and(|name| name.starts_with(HOSTILE_PREFIX))
}

/// One raw write at random; None when the table has nothing to aim at yet.
pub fn write(store: &MemStore, rng: &mut Rng, n: u64, now: Timestamp) -> Option<HostileWrite> {
    let machines: Vec<(ItemKey, Item)> = store.with_items(|all| {
        all.iter()
            .filter(|(k, _)| !is_hostile(k) && k.sk.starts_with("Machine#"))
            .map(|(k, i)| (k.clone(), i.clone()))
            .collect()
    });
    let observed: Vec<&(ItemKey, Item)> = machines
        .iter()
        .filter(|(k, i)| k.sk.ends_with("#status") && instance_of(i).is_some())
        .collect();
    let desired: Vec<&(ItemKey, Item)> = machines
        .iter()
        .filter(|(k, _)| k.sk.ends_with("#spec"))
        .collect();
    let pick = |rng: &mut Rng, len: usize| rng.below(len as u64) as usize;
    match rng.below(5) {
        0 if !observed.is_empty() => {
            let (key, item) = observed[pick(rng, observed.len())];
            let mut stray = item.clone();
            stray_status(&mut stray, now);
            raw_put(store, stray);
            Some(HostileWrite {
                what: format!("unknown fields and stray conditions in {}", key.sk),
                victim: victim(key, instance_of(item)),
            })
        }
        1 if !desired.is_empty() => {
            let (key, item) = desired[pick(rng, desired.len())];
            let name = format!("{HOSTILE_PREFIX}{n}");
            let mut item = renamed(item, &key.pk, &name);
            let what = invalidate(&mut item, rng);
            raw_put(store, item);
            Some(HostileWrite {
                what: format!("invalid desired Machine {name} ({what})"),
                victim: None,
            })
        }
        2 if !observed.is_empty() => {
            let (key, item) = observed[pick(rng, observed.len())];
            let cluster = key.pk.split_once('#').map_or("", |(_, c)| c);
            let pk = format!("{INTRUDER_NAMESPACE}#{cluster}");
            let name = format!("{HOSTILE_PREFIX}forged-{n}");
            let mut forged = renamed(item, &pk, &name);
            forged.insert("namespace".into(), AttrValue::S(INTRUDER_NAMESPACE.into()));
            raw_put(store, forged);
            Some(HostileWrite {
                what: format!(
                    "forged {pk}/{name} naming the instance and uid of {}",
                    key.sk
                ),
                victim: victim(key, instance_of(item)),
            })
        }
        3 if !desired.is_empty() => {
            let (key, item) = desired[pick(rng, desired.len())];
            let name = format!("{HOSTILE_PREFIX}{n}");
            let mut item = renamed(item, &key.pk, &name);
            item.insert(SK.into(), AttrValue::S(format!("Machine#{name}#status")));
            item.insert("junk".into(), AttrValue::S("x".repeat(300 * 1024)));
            raw_put(store, item);
            Some(HostileWrite {
                what: format!("a 300 KB value in {}/Machine#{name}#status", key.pk),
                victim: None,
            })
        }
        4 if !desired.is_empty() => {
            let (key, item) = desired[pick(rng, desired.len())];
            let namespace = key.pk.split_once('#').map_or("", |(ns, _)| ns);
            let pk = format!("{namespace}#elsewhere");
            let name = format!("{HOSTILE_PREFIX}{n}");
            raw_put(store, renamed(item, &pk, &name));
            Some(HostileWrite {
                what: format!("Machine {name} in {pk} whose spec names another cluster"),
                victim: None,
            })
        }
        _ => None,
    }
}

fn victim(key: &ItemKey, instance: Option<String>) -> Option<Victim> {
    let machine = key.sk.split('#').nth(1)?.to_string();
    Some(Victim {
        pk: key.pk.clone(),
        machine,
        instance_id: instance?,
    })
}

/// A raw PutItem: whatever was there is replaced, no condition.
fn raw_put(store: &MemStore, item: Item) {
    let put = store.put(item, Expect::Any);
    // The in-memory store answers at once; a refusal (size, keys) is part of the test.
    let _ = futures_now(put);
}

/// Runs a future of the in-memory store, which never waits.
fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

fn instance_of(item: &Item) -> Option<String> {
    match field(item.get("status")?, "instanceId")? {
        AttrValue::S(id) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

fn field<'a>(value: &'a AttrValue, name: &str) -> Option<&'a AttrValue> {
    match value {
        AttrValue::M(m) => m.get(name),
        _ => None,
    }
}

/// The item under another name (and partition), without owners or labels, so nothing
/// of the workload's adopts or selects it.
fn renamed(item: &Item, pk: &str, name: &str) -> Item {
    let mut item = item.clone();
    let sk = match item_key(&item) {
        Some(k) if k.sk.ends_with("#status") => format!("Machine#{name}#status"),
        _ => format!("Machine#{name}#spec"),
    };
    item.insert(PK.into(), AttrValue::S(pk.into()));
    item.insert(SK.into(), AttrValue::S(sk));
    item.insert("name".into(), AttrValue::S(name.into()));
    item.remove("ownerReferences");
    item.remove("labels");
    item
}

/// What a node agent and a newer function add to a status: fields this version does
/// not know, a condition carrying `observedGeneration`, and one with a bad status.
fn stray_status(item: &mut Item, now: Timestamp) {
    let Some(AttrValue::M(status)) = item.get_mut("status") else {
        return;
    };
    let mut node = Item::new();
    node.insert("kubeletVersion".into(), AttrValue::S("v1.31.2".into()));
    status.insert("nodeInfo".into(), AttrValue::M(node));
    let condition = |type_: &str, value: &str, generation: bool| {
        let mut c = Item::new();
        c.insert("type".into(), AttrValue::S(type_.into()));
        c.insert("status".into(), AttrValue::S(value.into()));
        c.insert("lastTransitionTime".into(), AttrValue::S(now.to_string()));
        if generation {
            c.insert("observedGeneration".into(), AttrValue::N("3".into()));
            c.insert("severity".into(), AttrValue::S("Info".into()));
        }
        AttrValue::M(c)
    };
    let conditions = status
        .entry("conditions".to_string())
        .or_insert_with(|| AttrValue::L(Vec::new()));
    if let AttrValue::L(list) = conditions {
        list.push(condition("NodeReady", "True", true));
        list.push(condition("NodeHealthy", "Maybe", false));
    }
}

/// Makes a desired Machine invalid in one of the ways `capstan validate` refuses.
fn invalidate(item: &mut Item, rng: &mut Rng) -> &'static str {
    let Some(spec) = item.get_mut("spec") else {
        return "no spec";
    };
    // A MachineSet's Machine names its launch spec (`launchRef`): the raw writer
    // writes one out beside it, invalid in one of the ways below.
    let AttrValue::M(fields) = spec else {
        return "no spec";
    };
    let launch = fields
        .entry("launch".to_string())
        .or_insert_with(|| AttrValue::M(Item::new()));
    let set = |value: &mut AttrValue, path: &[&str], to: AttrValue| {
        let mut at = value;
        for p in &path[..path.len() - 1] {
            let AttrValue::M(m) = at else { return };
            at = m
                .entry(p.to_string())
                .or_insert_with(|| AttrValue::M(Item::new()));
        }
        if let AttrValue::M(m) = at {
            m.insert(path[path.len() - 1].to_string(), to);
        }
    };
    match rng.below(4) {
        0 => {
            set(
                launch,
                &["metadataOptions", "httpTokens"],
                AttrValue::S("optional".into()),
            );
            "IMDSv1"
        }
        1 => {
            set(launch, &["rootVolume", "encrypted"], AttrValue::Bool(false));
            "an unencrypted root volume"
        }
        2 => {
            set(
                launch,
                &["userData"],
                AttrValue::S(
                    "export AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
                ),
            );
            "a secret in user data"
        }
        _ => {
            set(
                launch,
                &["tags", labels::TAG_INSTALLATION],
                AttrValue::S("someone-else".into()),
            );
            "a capstan.dev/ tag"
        }
    }
}
