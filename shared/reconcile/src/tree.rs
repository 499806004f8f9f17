//! A snapshot of one cluster's partition (or part of it), decoded and grouped by object.

use std::collections::BTreeMap;

use capstan_model::item::{self, DecodeError, Part};
use capstan_model::{FieldError, Item, Kind, Object, ObjectKey, OwnerReference, StoredObject};

/// An object whose observed item cannot be read, even leniently (see
/// [`capstan_model::item::DecodeError::Unreadable`]). It exists: its owner counts it, its
/// instance is not an orphan, and nothing acts on it (no launch, no delete, no
/// terminate) until it can be read again. It is reported, on its owner and in the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    pub key: ObjectKey,
    pub errors: Vec<FieldError>,
    pub desired_rv: Option<u64>,
    pub observed_rv: Option<u64>,
    /// The controlling owner, as far as the raw items say.
    pub owner: Option<OwnerReference>,
}

impl Unreadable {
    /// One line for a condition or a log: which object, and why.
    pub fn describe(&self) -> String {
        let why = self
            .errors
            .iter()
            .take(3)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        format!("{} {}: {why}", self.key.kind, self.key.name)
    }
}

/// What one Query of a cluster partition returned, as objects.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    objects: BTreeMap<(Kind, String), StoredObject>,
    /// Objects whose desired item could not be read: the errors, by key.
    invalid: BTreeMap<(Kind, String), Vec<FieldError>>,
    /// Objects whose observed item cannot be read: present, but not to be acted on.
    unreadable: BTreeMap<(Kind, String), Unreadable>,
}

impl Tree {
    /// Pairs each object's desired and observed items and decodes them. An item that is
    /// not Capstan's is skipped; an object whose desired spec is invalid keeps what its
    /// observed item says (or a blank object) and is listed by [`Tree::spec_errors`]; an
    /// object whose observed item cannot be read is listed by [`Tree::unreadable`] and
    /// is not among the objects [`Tree::get`] and friends return.
    pub fn from_items(items: &[Item]) -> Tree {
        let mut pairs: BTreeMap<ObjectKey, (Option<&Item>, Option<&Item>)> = BTreeMap::new();
        for it in items {
            let Some((key, part)) = item::item_key(it).and_then(|k| k.parse()) else {
                continue;
            };
            let slot = pairs.entry(key).or_default();
            match part {
                Part::Desired => slot.0 = Some(it),
                Part::Observed => slot.1 = Some(it),
            }
        }
        let mut tree = Tree::default();
        for (key, (desired, observed)) in pairs {
            let id = (key.kind, key.name.clone());
            match item::decode(desired, observed) {
                Ok(stored) => {
                    tree.objects.insert(id, stored);
                }
                Err(DecodeError::Unreadable { errors, .. }) => {
                    let owner = [desired, observed]
                        .into_iter()
                        .flatten()
                        .find_map(raw_controller);
                    tree.unreadable.insert(
                        id,
                        Unreadable {
                            key,
                            errors,
                            desired_rv: desired.map(item::version_of),
                            observed_rv: observed.map(item::version_of),
                            owner,
                        },
                    );
                }
                Err(err) => {
                    let errors = match err {
                        DecodeError::Invalid { errors, .. } => errors,
                        DecodeError::Unreadable { errors, .. } => errors,
                        DecodeError::BadKey(k) => {
                            vec![FieldError::new("(item)", format!("bad key {k}"), "")]
                        }
                    };
                    let mut fallback = observed
                        .and_then(|o| item::decode(None, Some(o)).ok())
                        .unwrap_or_else(|| StoredObject {
                            object: Object::blank(&key),
                            desired_rv: None,
                            observed_rv: None,
                            observed_spec_hash: None,
                            observed_annotations: None,
                        });
                    fallback.desired_rv = desired.map(item::version_of);
                    tree.invalid.insert(id.clone(), errors);
                    tree.objects.insert(id, fallback);
                }
            }
        }
        tree.resolve_launches();
        tree
    }

    /// Gives every Machine with a `launchRef` the launch spec its class resolves it to
    /// ([`crate::launch::resolve_launch`]), when the class was read with it. Each
    /// distinct reference is resolved (and hashed) once per tree, not once per Machine.
    fn resolve_launches(&mut self) {
        let classes: BTreeMap<String, capstan_model::MachineClassSpec> = self
            .objects
            .iter()
            .filter_map(|((kind, name), s)| match (&s.object, kind) {
                (Object::MachineClass(c), Kind::MachineClass) => {
                    Some((name.clone(), c.spec.clone()))
                }
                _ => None,
            })
            .collect();
        let mut resolved: BTreeMap<
            (String, capstan_model::LaunchRef),
            Option<capstan_model::LaunchSpec>,
        > = BTreeMap::new();
        for stored in self.objects.values_mut() {
            let Object::Machine(m) = &mut stored.object else {
                continue;
            };
            let Some(reference) = &m.spec.launch_ref else {
                continue;
            };
            m.spec.resolved_launch = resolved
                .entry((m.spec.machine_class.clone(), reference.clone()))
                .or_insert_with(|| {
                    classes
                        .get(&m.spec.machine_class)
                        .and_then(|class| crate::launch::resolve_launch(class, reference))
                })
                .clone();
        }
    }

    /// The object `name` of `kind` if its observed item cannot be read.
    pub fn unreadable(&self, kind: Kind, name: &str) -> Option<&Unreadable> {
        self.unreadable.get(&(kind, name.to_string()))
    }

    /// Every object whose observed item cannot be read.
    pub fn all_unreadable(&self) -> impl Iterator<Item = &Unreadable> {
        self.unreadable.values()
    }

    /// Unreadable objects of `kind` whose controller (as the raw items say) is `owner`.
    pub fn unreadable_owned_by(
        &self,
        kind: Kind,
        owner: Kind,
        owner_name: &str,
    ) -> impl Iterator<Item = &Unreadable> {
        let owner_name = owner_name.to_string();
        self.unreadable.values().filter(move |u| {
            u.key.kind == kind
                && u.owner
                    .as_ref()
                    .is_some_and(|o| o.kind == owner && o.name == owner_name)
        })
    }

    /// Whether an object of that kind and name exists, readable or not.
    pub fn exists(&self, kind: Kind, name: &str) -> bool {
        self.get(kind, name).is_some() || self.unreadable(kind, name).is_some()
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&StoredObject> {
        self.objects.get(&(kind, name.to_string()))
    }

    pub fn spec_errors(&self, kind: Kind, name: &str) -> Option<&[FieldError]> {
        self.invalid
            .get(&(kind, name.to_string()))
            .map(Vec::as_slice)
    }

    pub fn all(&self) -> impl Iterator<Item = &StoredObject> {
        self.objects.values()
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &StoredObject> {
        self.objects
            .values()
            .filter(move |s| s.object.kind() == kind)
    }

    /// Objects of `kind` whose controller is `owner`.
    pub fn owned_by(
        &self,
        kind: Kind,
        owner: Kind,
        owner_name: &str,
    ) -> impl Iterator<Item = &StoredObject> {
        let owner_name = owner_name.to_string();
        self.of_kind(kind).filter(move |s| {
            s.object
                .metadata()
                .controller()
                .is_some_and(|o| o.kind == owner && o.name == owner_name)
        })
    }

    /// The MachineClass `name`, unless it is missing or being deleted.
    pub fn live_class(&self, name: &str) -> Option<&capstan_model::MachineClass> {
        self.get(Kind::MachineClass, name)
            .filter(|s| !s.is_deleting())
            .and_then(|s| s.object.as_machine_class())
    }

    /// True when the cluster exists, is not being deleted, and is paused.
    pub fn cluster_paused(&self) -> bool {
        self.of_kind(Kind::Cluster)
            .next()
            .filter(|s| !s.is_deleting())
            .and_then(|s| s.object.as_cluster())
            .is_some_and(|c| c.spec.paused)
    }

    /// How the cluster's API server is reached, when the Cluster declares it.
    pub fn cluster_access(&self) -> Option<&capstan_model::ClusterAccess> {
        self.of_kind(Kind::Cluster)
            .next()
            .and_then(|s| s.object.as_cluster())
            .and_then(|c| c.spec.access.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// The controlling owner an item names, read leniently from its raw attribute.
fn raw_controller(it: &Item) -> Option<OwnerReference> {
    let refs = item::from_attr(it.get("ownerReferences")?);
    refs.as_array()?
        .iter()
        .filter_map(|r| serde_json::from_value::<OwnerReference>(r.clone()).ok())
        .find(|r| r.controller)
}
