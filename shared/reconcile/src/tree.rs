//! A snapshot of one cluster's partition (or part of it), decoded and grouped by object.

use std::collections::BTreeMap;

use capstan_model::item::{self, DecodeError, Part};
use capstan_model::{FieldError, Item, Kind, Object, ObjectKey, StoredObject};

/// What one Query of a cluster partition returned, as objects.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    objects: BTreeMap<(Kind, String), StoredObject>,
    /// Objects whose desired item could not be read: the errors, by key.
    invalid: BTreeMap<(Kind, String), Vec<FieldError>>,
}

impl Tree {
    /// Pairs each object's desired and observed items and decodes them. An item that is
    /// not Capstan's is skipped; an object whose desired spec does not decode keeps what
    /// its observed item says (or a blank object) and is listed by [`Tree::spec_errors`].
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
                Err(err) => {
                    let errors = match err {
                        DecodeError::Invalid { errors, .. } => errors,
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
                        });
                    fallback.desired_rv = desired.map(item::version_of);
                    tree.invalid.insert(id.clone(), errors);
                    tree.objects.insert(id, fallback);
                }
            }
        }
        tree
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

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }
}
