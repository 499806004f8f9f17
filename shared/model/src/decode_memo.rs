//! The last decodes, kept per thread and reused while the items are unchanged.
//!
//! Decoding an object's items is pure and costly (items to JSON, typed deserialisation
//! with paths, validation), and every reconcile decodes its partition again, most of
//! it as it was the last time. A decode is reused only when both items are equal to
//! the ones it was made from, so reusing one can never change what a caller sees. The
//! memo holds at most [`CAPACITY`] objects and starts again empty when full: a bound
//! on memory, not a cache policy to tune.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::item::{DecodeError, Item, StoredObject};

/// Objects remembered per thread. A cluster of a few hundred Machines fits many times.
pub const CAPACITY: usize = 4096;

struct Entry {
    desired: Option<Item>,
    observed: Option<Item>,
    decoded: StoredObject,
}

thread_local! {
    static MEMO: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// `decode(desired, observed)`, reused when this thread last decoded the same items
/// for `object` (any string naming the object uniquely, e.g. its partition and sort
/// key). Errors are not remembered: they are rare and their text is cheap to rebuild.
pub fn decoded(
    object: &str,
    desired: Option<&Item>,
    observed: Option<&Item>,
    decode: impl FnOnce() -> Result<StoredObject, DecodeError>,
) -> Result<StoredObject, DecodeError> {
    let hit = MEMO.with_borrow(|memo| {
        memo.get(object)
            .filter(|e| e.desired.as_ref() == desired && e.observed.as_ref() == observed)
            .map(|e| e.decoded.clone())
    });
    if let Some(decoded) = hit {
        return Ok(decoded);
    }
    let decoded = decode()?;
    MEMO.with_borrow_mut(|memo| {
        if memo.len() >= CAPACITY && !memo.contains_key(object) {
            memo.clear();
        }
        memo.insert(
            object.to_string(),
            Entry {
                desired: desired.cloned(),
                observed: observed.cloned(),
                decoded: decoded.clone(),
            },
        );
    });
    Ok(decoded)
}

/// How many objects this thread remembers (for tests and benchmarks).
pub fn len() -> usize {
    MEMO.with_borrow(HashMap::len)
}
