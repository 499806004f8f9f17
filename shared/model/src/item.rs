//! The DynamoDB single-table layout, as a pure codec between objects and items.
//!
//! One table, two items per object, both in the object's cluster partition:
//!
//! | attribute | desired item | observed item |
//! |---|---|---|
//! | `pk` | `<namespace>#<cluster>` | same |
//! | `sk` | `<Kind>#<name>#spec` | `<Kind>#<name>#status` |
//! | written by | people (CLI or raw PutItem) and parents creating children | the object's own reconciler |
//! | holds | apiVersion, kind, name, namespace, labels, annotations, ownerReferences, spec | uid, generation, specHash, timestamps, finalizers, ownerReferences, labels, annotations (Machines), last spec, status |
//! | `rv` | version, bumped by every conditional write | same, independently |
//! | `instanceId` | — | Machines with an instance only: the key of the sparse `instance-index` GSI |
//!
//! The namespace leads the partition key so `dynamodb:LeadingKeys` can confine a team
//! to its namespaces; one Query on `pk` reads a cluster's whole tree; an observed item
//! without its desired item means "being deleted" (it is the finalizer).

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};
use thiserror::Error;

use crate::hash::spec_hash;
use crate::meta::ObjectMeta;
use crate::object::{API_VERSION, Kind, Object, ObjectKey};

/// Name of the sparse global secondary index from instance id to Machine.
pub const INSTANCE_INDEX: &str = "instance-index";
/// Attribute names the key schema and the index use.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const RV: &str = "rv";
pub const INSTANCE_ID: &str = "instanceId";

/// A DynamoDB attribute value (the subset Capstan writes and reads).
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    S(String),
    /// Numbers travel as strings, as in DynamoDB.
    N(String),
    Bool(bool),
    Null,
    L(Vec<AttrValue>),
    M(BTreeMap<String, AttrValue>),
}

/// One item: attribute name to value.
pub type Item = BTreeMap<String, AttrValue>;

/// The condition a write is made under (DynamoDB ConditionExpression).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The item must not exist (`attribute_not_exists(pk)`): create.
    Absent,
    /// The item must exist with this `rv` (0 matches an item written without one).
    Version(u64),
}

/// Which of an object's two items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Desired,
    Observed,
}

pub fn partition_key(namespace: &str, cluster: &str) -> String {
    format!("{namespace}#{cluster}")
}

pub fn sort_key(kind: Kind, name: &str, part: Part) -> String {
    match part {
        Part::Desired => format!("{kind}#{name}#spec"),
        Part::Observed => format!("{kind}#{name}#status"),
    }
}

/// The sort-key prefix both of an object's items share (for a one-object Query).
pub fn object_prefix(kind: Kind, name: &str) -> String {
    format!("{kind}#{name}#")
}

/// The sort-key prefix every object of one kind shares.
pub fn kind_prefix(kind: Kind) -> String {
    format!("{kind}#")
}

/// The sort-key prefix of a MachineSet's Machines (named `<set>-<suffix>`,
/// [`crate::meta::set_machine_name_prefix`]): the set reads its own Machines with one
/// Query instead of the cluster's partition.
pub fn set_machines_prefix(set: &str) -> String {
    format!(
        "{}#{}",
        Kind::Machine,
        crate::meta::set_machine_name_prefix(set)
    )
}

/// Primary key of one item.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub pk: String,
    pub sk: String,
}

impl ItemKey {
    pub fn of(key: &ObjectKey, part: Part) -> ItemKey {
        ItemKey {
            pk: partition_key(&key.namespace, &key.cluster),
            sk: sort_key(key.kind, &key.name, part),
        }
    }

    /// Reads the key back into an object key and part; None for items that are not ours.
    pub fn parse(&self) -> Option<(ObjectKey, Part)> {
        let (namespace, cluster) = self.pk.split_once('#')?;
        let mut parts = self.sk.splitn(3, '#');
        let kind = Kind::parse(parts.next()?)?;
        let name = parts.next()?;
        let part = match parts.next()? {
            "spec" => Part::Desired,
            "status" => Part::Observed,
            _ => return None,
        };
        Some((ObjectKey::new(namespace, cluster, kind, name), part))
    }
}

pub fn item_key(item: &Item) -> Option<ItemKey> {
    match (item.get(PK), item.get(SK)) {
        (Some(AttrValue::S(pk)), Some(AttrValue::S(sk))) => Some(ItemKey {
            pk: pk.clone(),
            sk: sk.clone(),
        }),
        _ => None,
    }
}

/// The version attribute of an item; an item written without one (a raw PutItem) is version 0.
/// An item's size as DynamoDB counts it, closely enough to keep under its limits
/// (400 KB an item, 4 MB a transaction):
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + attr_size(v)).sum()
}

fn attr_size(v: &AttrValue) -> usize {
    match v {
        AttrValue::S(s) => s.len(),
        AttrValue::N(n) => n.len().div_ceil(2) + 1,
        AttrValue::Bool(_) | AttrValue::Null => 1,
        AttrValue::L(l) => 3 + l.iter().map(|e| 1 + attr_size(e)).sum::<usize>(),
        AttrValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + attr_size(e))
                .sum::<usize>()
        }
    }
}

pub fn version_of(item: &Item) -> u64 {
    match item.get(RV) {
        Some(AttrValue::N(n)) => n.parse().unwrap_or(0),
        _ => 0,
    }
}

/// An object as stored: the merged object and the version of each item that exists.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredObject {
    pub object: Object,
    /// Version of the desired item; None once a person deleted it (the object is being deleted).
    pub desired_rv: Option<u64>,
    /// Version of the observed item; None until its reconciler first saw it.
    pub observed_rv: Option<u64>,
    /// The spec hash the observed item last recorded.
    pub observed_spec_hash: Option<String>,
    /// A Machine's annotations as its observed item keeps them (None for other kinds,
    /// or without an observed item): what its deletion reads once the desired item is
    /// gone (drain exclusion, pre-drain and pre-terminate hooks).
    pub observed_annotations: Option<BTreeMap<String, String>>,
}

impl StoredObject {
    pub fn key(&self) -> ObjectKey {
        self.object.key()
    }

    /// The desired item is gone: tear down, then remove the observed item.
    pub fn is_deleting(&self) -> bool {
        self.desired_rv.is_none()
    }

    /// The reconciler has not yet taken the object in (no uid, no finalizer).
    pub fn is_new(&self) -> bool {
        self.observed_rv.is_none()
    }

    /// A Machine's observed item keeps other annotations than its desired item has:
    /// write it, so they are still there once the desired item is deleted.
    pub fn annotations_stale(&self) -> bool {
        self.desired_rv.is_some()
            && self
                .observed_annotations
                .as_ref()
                .is_some_and(|kept| kept != &self.object.metadata().annotations)
    }

    /// The desired spec differs from the one the observed item last recorded.
    pub fn spec_changed(&self) -> bool {
        self.desired_rv.is_some()
            && self.observed_spec_hash.as_deref()
                != Some(spec_hash(&self.object.spec_json()).as_str())
    }
}

/// Why an item could not be read back into an object.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    /// The item lacks `pk`/`sk` or they do not follow the layout.
    #[error("item key {0:?} does not follow Capstan's layout")]
    BadKey(String),
    /// The desired item is not a valid object: exactly what `capstan validate` would say
    /// of it (see [`crate::validate::validate_document`]), or its cluster disagrees
    /// with its partition's.
    #[error("{key}: {}", join(errors))]
    Invalid {
        key: String,
        errors: Vec<crate::FieldError>,
    },
    /// The observed item cannot be read even leniently: a known field holds a value of
    /// the wrong type, or the item is larger than anything Capstan writes. The object
    /// exists all the same: whoever meets it reports it and leaves it alone, and never
    /// reads it as absent.
    #[error("{key}: the observed item cannot be read: {}", join(errors))]
    Unreadable {
        key: String,
        errors: Vec<crate::FieldError>,
    },
}

fn join(errors: &[crate::FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Largest observed item read, in bytes. Capstan's own stay well under it (a spec is at
/// most [`crate::validate::MAX_SPEC_BYTES`], labels [`crate::validate::MAX_LABELS_BYTES`],
/// conditions are bounded); one larger was written by someone else and is left alone,
/// so writing it back with a new status can never cross DynamoDB's 400 KB.
pub const MAX_OBSERVED_ITEM_BYTES: usize = 300 * 1024;

/// The desired item of an object, at version `rv`.
pub fn encode_desired(object: &Object, rv: u64) -> Item {
    let key = object.key();
    let m = object.metadata();
    let mut item = Item::new();
    let ik = ItemKey::of(&key, Part::Desired);
    item.insert(PK.into(), AttrValue::S(ik.pk));
    item.insert(SK.into(), AttrValue::S(ik.sk));
    item.insert("apiVersion".into(), AttrValue::S(API_VERSION.into()));
    item.insert("kind".into(), AttrValue::S(key.kind.as_str().into()));
    item.insert("name".into(), AttrValue::S(m.name.clone()));
    item.insert("namespace".into(), AttrValue::S(m.namespace.clone()));
    if !m.labels.is_empty() {
        item.insert("labels".into(), string_map(&m.labels));
    }
    if !m.annotations.is_empty() {
        item.insert("annotations".into(), string_map(&m.annotations));
    }
    if !m.owner_references.is_empty() {
        item.insert(
            "ownerReferences".into(),
            to_attr(&json(&m.owner_references)),
        );
    }
    item.insert("spec".into(), to_attr(&object.spec_json()));
    item.insert(RV.into(), AttrValue::N(rv.to_string()));
    item
}

/// The observed item of an object, at version `rv`, recording `spec_hash`.
pub fn encode_observed(object: &Object, spec_hash: &str, rv: u64) -> Item {
    let key = object.key();
    let m = object.metadata();
    let mut item = Item::new();
    let ik = ItemKey::of(&key, Part::Observed);
    item.insert(PK.into(), AttrValue::S(ik.pk));
    item.insert(SK.into(), AttrValue::S(ik.sk));
    item.insert("kind".into(), AttrValue::S(key.kind.as_str().into()));
    item.insert("name".into(), AttrValue::S(m.name.clone()));
    item.insert("namespace".into(), AttrValue::S(m.namespace.clone()));
    item.insert("cluster".into(), AttrValue::S(key.cluster.clone()));
    if let Some(uid) = &m.uid {
        item.insert("uid".into(), AttrValue::S(uid.clone()));
    }
    if let Some(generation) = m.generation {
        item.insert("generation".into(), AttrValue::N(generation.to_string()));
    }
    item.insert("specHash".into(), AttrValue::S(spec_hash.to_string()));
    if let Some(t) = m.creation_timestamp {
        item.insert("creationTimestamp".into(), AttrValue::S(t.to_string()));
    }
    if let Some(t) = m.deletion_timestamp {
        item.insert("deletionTimestamp".into(), AttrValue::S(t.to_string()));
    }
    if !m.finalizers.is_empty() {
        item.insert("finalizers".into(), to_attr(&json(&m.finalizers)));
    }
    if !m.owner_references.is_empty() {
        item.insert(
            "ownerReferences".into(),
            to_attr(&json(&m.owner_references)),
        );
    }
    // Labels too: a health check must still select a Machine being deleted to count it
    // in flight, after its desired item (where people write labels) is gone.
    if !m.labels.is_empty() {
        item.insert("labels".into(), to_attr(&json(&m.labels)));
    }
    // A Machine's annotations too: its deletion reads them after the desired item is
    // gone (`capstan.dev/exclude-node-draining`, the pre-drain and pre-terminate hooks,
    // which their owners remove from this item to let the deletion go on).
    if key.kind == Kind::Machine && !m.annotations.is_empty() {
        item.insert("annotations".into(), to_attr(&json(&m.annotations)));
    }
    // The observed item also keeps the last spec it acted on, so a deleted object can
    // still be torn down (and shown) after its desired item is gone.
    item.insert("spec".into(), to_attr(&object.spec_json()));
    item.insert("status".into(), to_attr(&object.status_json()));
    if let Object::Machine(machine) = object
        && let Some(id) = &machine.status.instance_id
    {
        item.insert(INSTANCE_ID.into(), AttrValue::S(id.clone()));
    }
    item.insert(RV.into(), AttrValue::N(rv.to_string()));
    item
}

/// Reads an object back from whichever of its items exist (at least one must).
///
/// The two items are read by different rules, because different people write them:
/// - the **desired** item strictly, exactly as `capstan validate` reads a manifest
///   ([`crate::validate::validate_document`]), and its cluster must be its partition's:
///   anything wrong is [`DecodeError::Invalid`];
/// - the **observed** item leniently, as Kubernetes clients read status: unknown
///   fields anywhere are ignored (a newer function version's status field, a node
///   agent's `observedGeneration` on its condition), a condition that does not decode
///   costs only itself ([`crate::Conditions::read_lenient`]); anything else wrong is
///   [`DecodeError::Unreadable`], which wins over the desired item's errors.
///
/// The result is the desired object (spec, labels, annotations and, when it names
/// them, owner references) with what the observed item records (uid, generation,
/// timestamps, finalizers, status); or the observed object alone while being deleted.
///
/// Decodes are remembered per thread while their items stay the same
/// ([`crate::decode_memo`]): a reconcile re-reads its partition, mostly unchanged.
pub fn decode(
    desired: Option<&Item>,
    observed: Option<&Item>,
) -> Result<StoredObject, DecodeError> {
    let any = desired
        .or(observed)
        .ok_or_else(|| DecodeError::BadKey(String::new()))?;
    let ik = item_key(any).ok_or_else(|| DecodeError::BadKey(format!("{any:?}")))?;
    let object = format!("{}\u{0}{}", ik.pk, ik.sk);
    crate::decode_memo::decoded(&object, desired, observed, || {
        decode_items(&ik, desired, observed)
    })
}

fn decode_items(
    ik: &ItemKey,
    desired: Option<&Item>,
    observed: Option<&Item>,
) -> Result<StoredObject, DecodeError> {
    let (key, _) = ik
        .parse()
        .ok_or_else(|| DecodeError::BadKey(format!("{}/{}", ik.pk, ik.sk)))?;

    let seen = match observed {
        Some(o) => Some(
            read_observed(&key, o).map_err(|errors| DecodeError::Unreadable {
                key: key.to_string(),
                errors,
            })?,
        ),
        None => None,
    };
    let wanted = match desired {
        Some(d) => Some(
            read_desired(&key, d).map_err(|errors| DecodeError::Invalid {
                key: key.to_string(),
                errors,
            })?,
        ),
        None => None,
    };
    let observed_spec_hash = observed
        .and_then(|o| o.get("specHash"))
        .and_then(|v| match v {
            AttrValue::S(s) => Some(s.clone()),
            _ => None,
        });
    let desired_rv = desired.map(version_of);
    let observed_annotations = seen
        .as_ref()
        .filter(|s| s.kind() == Kind::Machine)
        .map(|s| s.metadata().annotations.clone());
    let object = match (wanted, seen) {
        (Some(mut wanted), Some(seen)) => {
            merge_observed(&mut wanted, seen);
            wanted
        }
        (Some(wanted), None) => wanted,
        (None, Some(seen)) => seen,
        (None, None) => return Err(DecodeError::BadKey(String::new())),
    };
    let mut object = object;
    object.metadata_mut().resource_version = desired_rv.map(|rv| rv.to_string());
    Ok(StoredObject {
        object,
        desired_rv,
        observed_rv: observed.map(version_of),
        observed_spec_hash,
        observed_annotations,
    })
}

/// The desired item as the object a person wrote, validated as `capstan validate` does.
fn read_desired(key: &ObjectKey, item: &Item) -> Result<Object, Vec<crate::FieldError>> {
    let d = from_item(item);
    let mut meta = Map::new();
    meta.insert("name".into(), key.name.clone().into());
    meta.insert("namespace".into(), key.namespace.clone().into());
    for field in ["labels", "annotations", "ownerReferences"] {
        if let Some(v) = d.get(field) {
            meta.insert(field.into(), v.clone());
        }
    }
    let mut body = Map::new();
    body.insert("apiVersion".into(), API_VERSION.into());
    body.insert("kind".into(), key.kind.as_str().into());
    body.insert("metadata".into(), Value::Object(meta));
    body.insert(
        "spec".into(),
        d.get("spec").cloned().unwrap_or(Value::Object(Map::new())),
    );
    let checked = crate::validate::validate_document(Value::Object(body));
    match checked.object {
        Some(object) if checked.errors.is_empty() => {
            in_partition(key, &object).map_err(|e| vec![e])?;
            Ok(object)
        }
        _ => Err(checked.errors),
    }
}

/// The observed item as the object it records, read leniently (see [`decode`]).
fn read_observed(key: &ObjectKey, item: &Item) -> Result<Object, Vec<crate::FieldError>> {
    let size = item_size(item);
    if size > MAX_OBSERVED_ITEM_BYTES {
        return Err(vec![crate::FieldError::new(
            "(item)",
            format!("is {size} bytes, more than the {MAX_OBSERVED_ITEM_BYTES} Capstan ever writes"),
            "remove what was added to the observed item by hand",
        )]);
    }
    let o = from_item(item);
    let mut meta = Map::new();
    meta.insert("name".into(), key.name.clone().into());
    meta.insert("namespace".into(), key.namespace.clone().into());
    for field in [
        "uid",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "finalizers",
        "ownerReferences",
        "labels",
        "annotations",
    ] {
        if let Some(v) = o.get(field) {
            meta.insert(field.into(), v.clone());
        }
    }
    let mut body = Map::new();
    body.insert("apiVersion".into(), API_VERSION.into());
    body.insert("kind".into(), key.kind.as_str().into());
    body.insert("metadata".into(), Value::Object(meta));
    if let Some(spec) = o.get("spec") {
        body.insert("spec".into(), spec.clone());
    }
    let mut status = o.get("status").cloned();
    // Conditions are read one by one, so a bad one costs only itself.
    let conditions = match &mut status {
        Some(Value::Object(map)) => map.remove("conditions"),
        _ => None,
    };
    if let Some(status) = status {
        body.insert("status".into(), status);
    }
    let (object, errors) =
        crate::parse::decode_object_with(Value::Object(body), crate::parse::Unknown::Ignore);
    let mut object = match object {
        Some(object) if errors.is_empty() => object,
        _ => return Err(errors),
    };
    if let Some(conditions) = conditions {
        *object.conditions_mut() = crate::meta::Conditions::read_lenient(&conditions).0;
    }
    in_partition(key, &object).map_err(|e| vec![e])?;
    Ok(object)
}

/// The object's cluster must be the one its partition key names: everything the
/// control plane writes for it goes to that partition (and IAM confines a team by it).
fn in_partition(key: &ObjectKey, object: &Object) -> Result<(), crate::FieldError> {
    let named = object.cluster_name();
    if named == key.cluster {
        return Ok(());
    }
    let pk = partition_key(&key.namespace, &key.cluster);
    Err(match object {
        Object::Cluster(_) => crate::FieldError::new(
            "metadata.name",
            format!(
                "the Cluster {named:?} is stored in partition {pk:?}, which belongs to cluster {:?}",
                key.cluster
            ),
            format!(
                "write it to partition {:?}",
                partition_key(&key.namespace, named)
            ),
        ),
        _ => crate::FieldError::new(
            "spec.clusterName",
            format!(
                "is {named:?}, but the item is stored in partition {pk:?}, which belongs to cluster {:?}",
                key.cluster
            ),
            format!(
                "set spec.clusterName: {}, or write the item to partition {:?}",
                key.cluster,
                partition_key(&key.namespace, named)
            ),
        ),
    })
}

/// Puts what the observed item records into the desired object: the control plane's
/// metadata, the owner references when the desired item names none, and the status.
fn merge_observed(wanted: &mut Object, seen: Object) {
    let seen_meta = seen.metadata().clone();
    let meta = wanted.metadata_mut();
    meta.uid = seen_meta.uid;
    meta.generation = seen_meta.generation;
    meta.creation_timestamp = seen_meta.creation_timestamp;
    meta.deletion_timestamp = seen_meta.deletion_timestamp;
    meta.finalizers = seen_meta.finalizers;
    if meta.owner_references.is_empty() {
        meta.owner_references = seen_meta.owner_references;
    }
    match (wanted, seen) {
        (Object::Cluster(w), Object::Cluster(s)) => w.status = s.status,
        (Object::MachineClass(w), Object::MachineClass(s)) => w.status = s.status,
        (Object::MachineDeployment(w), Object::MachineDeployment(s)) => w.status = s.status,
        (Object::MachineSet(w), Object::MachineSet(s)) => w.status = s.status,
        (Object::Machine(w), Object::Machine(s)) => w.status = s.status,
        (Object::MachineHealthCheck(w), Object::MachineHealthCheck(s)) => w.status = s.status,
        _ => {}
    }
}

/// Item form of a JSON value.
pub fn to_attr(value: &Value) -> AttrValue {
    match value {
        Value::Null => AttrValue::Null,
        Value::Bool(b) => AttrValue::Bool(*b),
        Value::Number(n) => AttrValue::N(n.to_string()),
        Value::String(s) => AttrValue::S(s.clone()),
        Value::Array(a) => AttrValue::L(a.iter().map(to_attr).collect()),
        Value::Object(o) => AttrValue::M(o.iter().map(|(k, v)| (k.clone(), to_attr(v))).collect()),
    }
}

/// JSON form of an item value. A number DynamoDB holds but JSON cannot is kept as a string.
pub fn from_attr(value: &AttrValue) -> Value {
    match value {
        AttrValue::Null => Value::Null,
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| n.parse::<u64>().ok().map(Value::from))
            .or_else(|| {
                n.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(n.clone())),
        AttrValue::S(s) => Value::String(s.clone()),
        AttrValue::L(l) => Value::Array(l.iter().map(from_attr).collect()),
        AttrValue::M(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), from_attr(v))).collect())
        }
    }
}

fn from_item(item: &Item) -> Map<String, Value> {
    item.iter()
        .map(|(k, v)| (k.clone(), from_attr(v)))
        .collect()
}

fn string_map(map: &BTreeMap<String, String>) -> AttrValue {
    AttrValue::M(
        map.iter()
            .map(|(k, v)| (k.clone(), AttrValue::S(v.clone())))
            .collect(),
    )
}

fn json(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl ObjectMeta {
    /// Drops everything the control plane owns, keeping what a person may set.
    pub fn clear_system_fields(&mut self) {
        self.uid = None;
        self.generation = None;
        self.resource_version = None;
        self.creation_timestamp = None;
        self.deletion_timestamp = None;
        self.finalizers.clear();
    }
}
