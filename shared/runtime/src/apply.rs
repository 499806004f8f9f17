//! `capstan apply`: write people's desired items, create-or-update, conditionally.

use capstan_model::item::{Part, encode_desired, object_prefix, partition_key, version_of};
use capstan_model::{Item, ItemKey, Object, ObjectKey};
use thiserror::Error;

use crate::ports::{Expect, Store, StoreError};

/// What applying one object did, as kubectl reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Created(ObjectKey),
    Configured(ObjectKey),
    Unchanged(ObjectKey),
}

#[derive(Debug, Error)]
pub enum ApplyError {
    #[error("{0} is being deleted: wait until it is gone, then apply again")]
    BeingDeleted(ObjectKey),
    #[error("writing {0}: {1}")]
    Store(ObjectKey, #[source] StoreError),
}

/// Writes each object's desired item (MachineClasses and Clusters first). Whatever the
/// control plane owns (status, uid, generation…) is never written from here.
pub async fn apply<S: Store>(store: &S, objects: &[Object]) -> Result<Vec<Applied>, ApplyError> {
    let mut ordered: Vec<&Object> = objects.iter().collect();
    ordered.sort_by_key(|o| o.kind());
    let mut out = Vec::new();
    for object in ordered {
        out.push(apply_one(store, object).await?);
    }
    Ok(out)
}

async fn apply_one<S: Store>(store: &S, object: &Object) -> Result<Applied, ApplyError> {
    let key = object.key();
    let mut object = object.clone();
    object.metadata_mut().clear_system_fields();
    let fail = |e| ApplyError::Store(key.clone(), e);
    for _ in 0..crate::control_plane::CONFLICT_RETRIES {
        let pk = partition_key(&key.namespace, &key.cluster);
        let items = store
            .query(&pk, Some(&object_prefix(key.kind, &key.name)))
            .await
            .map_err(fail)?;
        let find = |part: Part| -> Option<&Item> {
            let want = ItemKey::of(&key, part);
            items
                .iter()
                .find(|i| capstan_model::item::item_key(i).as_ref() == Some(&want))
        };
        let (desired, observed) = (find(Part::Desired), find(Part::Observed));
        let (expect, rv) = match (desired, observed) {
            (None, Some(_)) => return Err(ApplyError::BeingDeleted(key)),
            (None, None) => (Expect::Absent, 1),
            (Some(d), _) => {
                let rv = version_of(d);
                let without_version = |mut item: Item| {
                    item.remove(capstan_model::item::RV);
                    item
                };
                if without_version(encode_desired(&object, rv)) == without_version(d.clone()) {
                    return Ok(Applied::Unchanged(key));
                }
                (Expect::Version(rv), rv + 1)
            }
        };
        match store.put(encode_desired(&object, rv), expect).await {
            Ok(()) if expect == Expect::Absent => return Ok(Applied::Created(key)),
            Ok(()) => return Ok(Applied::Configured(key)),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    Err(fail(StoreError::Conflict))
}

/// `capstan delete`: removes the desired item; the control plane tears the rest down.
pub async fn delete<S: Store>(store: &S, key: &ObjectKey) -> Result<bool, StoreError> {
    let pk = partition_key(&key.namespace, &key.cluster);
    let items = store
        .query(&pk, Some(&object_prefix(key.kind, &key.name)))
        .await?;
    let exists = items
        .iter()
        .any(|i| capstan_model::item::item_key(i) == Some(ItemKey::of(key, Part::Desired)));
    if exists {
        store
            .delete(&ItemKey::of(key, Part::Desired), Expect::Any)
            .await?;
    }
    Ok(exists)
}
