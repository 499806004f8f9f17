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
    #[error("{0} cannot be read: {1}")]
    Unreadable(ObjectKey, String),
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
        let (desired, observed) = items_of(store, &key).await.map_err(fail)?;
        let (expect, rv) = match (&desired, observed) {
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
    let exists = items_of(store, key).await?.0.is_some();
    if exists {
        store
            .delete(&ItemKey::of(key, Part::Desired), Expect::Any)
            .await?;
    }
    Ok(exists)
}

/// Removes `annotation` from an object: how a deletion hook's owner
/// (`pre-drain.delete.hook.capstan.dev/<owner>`, `pre-terminate.…`) lets a Machine's
/// deletion go on. False if the object does not carry it.
///
/// While the object is being deleted its desired item is gone and its annotations live
/// on its observed item: the annotation is removed there, conditionally on the item's
/// version and with the version bumped, so that a reconcile still holding the old item
/// fails its conditional write and reads again rather than writing the hook back.
/// Writers that do this with their own UpdateItem do the same: `REMOVE
/// annotations.#hook SET rv = rv + :one`, on the condition `rv = :read`.
pub async fn remove_annotation<S: Store>(
    store: &S,
    key: &ObjectKey,
    annotation: &str,
) -> Result<bool, ApplyError> {
    use capstan_model::item::AttrValue;
    let fail = |e| ApplyError::Store(key.clone(), e);
    for _ in 0..crate::control_plane::CONFLICT_RETRIES {
        match items_of(store, key).await.map_err(fail)? {
            (Some(desired), observed) => {
                let stored = capstan_model::item::decode(Some(&desired), observed.as_ref())
                    .map_err(|e| ApplyError::Unreadable(key.clone(), e.to_string()))?;
                let mut object = stored.object;
                if object
                    .metadata_mut()
                    .annotations
                    .remove(annotation)
                    .is_none()
                {
                    return Ok(false);
                }
                return apply_one(store, &object).await.map(|_| true);
            }
            (None, Some(observed)) => {
                let mut item = observed.clone();
                let removed = match item.get_mut("annotations") {
                    Some(AttrValue::M(map)) => map.remove(annotation).is_some(),
                    _ => false,
                };
                if !removed {
                    return Ok(false);
                }
                let rv = version_of(&observed);
                item.insert(
                    capstan_model::item::RV.into(),
                    AttrValue::N((rv + 1).to_string()),
                );
                match store.put(item, Expect::Version(rv)).await {
                    Ok(()) => return Ok(true),
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(fail(e)),
                }
            }
            (None, None) => return Ok(false),
        }
    }
    Err(fail(StoreError::Conflict))
}

/// The object's desired and observed items as they are now (either may be absent):
/// one Query on the object's sort-key prefix.
async fn items_of<S: Store>(
    store: &S,
    key: &ObjectKey,
) -> Result<(Option<Item>, Option<Item>), StoreError> {
    let pk = partition_key(&key.namespace, &key.cluster);
    let (want_desired, want_observed) = (
        ItemKey::of(key, Part::Desired),
        ItemKey::of(key, Part::Observed),
    );
    let (mut desired, mut observed) = (None, None);
    for item in store
        .query(&pk, Some(&object_prefix(key.kind, &key.name)))
        .await?
    {
        match capstan_model::item::item_key(&item) {
            Some(k) if k == want_desired => desired = Some(item),
            Some(k) if k == want_observed => observed = Some(item),
            _ => {}
        }
    }
    Ok((desired, observed))
}
