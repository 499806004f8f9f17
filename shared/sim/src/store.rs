//! An in-memory DynamoDB table with Capstan's key schema (`pk`, `sk`), its sparse
//! `instance-index` GSI on `instanceId`, and a change stream with NEW_AND_OLD_IMAGES.
//!
//! Semantics kept from DynamoDB, because the handlers rely on them:
//! - reads of the base table are strongly consistent; the GSI is eventually consistent
//!   ([`MemStore::with_index_lag`]), and propagates in write order;
//! - a write replaces the whole item, atomically, under its condition; a failed
//!   condition (`ConditionalCheckFailedException`) changes nothing and emits no record;
//! - every successful write that touches an item emits one stream record, even when the
//!   new image equals the old one; deleting an absent item emits none
//!   (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html>);
//! - items are validated like DynamoDB does: key attributes must be non-empty strings, a
//!   GSI key attribute must have the index's type and be non-empty, numbers must be
//!   numbers, and an item may not exceed 400 KB.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::Timestamp;
use capstan_model::item::{
    AttrValue, INSTANCE_ID, INSTANCE_INDEX, Item, ItemKey, PK, SK, item_key, item_size, version_of,
};
use capstan_runtime::{
    ChangeKind, Clock, Expect, MAX_INSTANCE_MATCHES, MAX_TRANSACT_WRITES, ScanPage, Store,
    StoreError, StreamRecord, Write,
};

use crate::clock::after;

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// DynamoDB's limit on the total size of one transaction.
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

/// The table. Clones share it.
#[derive(Clone)]
pub struct MemStore {
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("MemStore")
            .field("items", &s.items.len())
            .field("unread_stream", &s.stream.len())
            .field("writes", &s.writes)
            .field("conflicts", &s.conflicts)
            .finish_non_exhaustive()
    }
}

/// A fault armed with `fail_next` / `fail_next_after_effect`.
#[derive(Debug)]
enum Fault {
    /// The call fails and has no effect.
    Before(StoreError),
    /// The call takes effect, then reports the error (a timeout after success).
    After(StoreError),
}

/// One index update still propagating to the GSI.
#[derive(Debug)]
struct IndexChange {
    visible_at: Timestamp,
    key: ItemKey,
    instance_id: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    items: BTreeMap<ItemKey, Item>,
    index_lag: Duration,
    /// What the GSI shows now: item key → instance id, and the reverse.
    index: BTreeMap<ItemKey, String>,
    by_instance: BTreeMap<String, BTreeSet<ItemKey>>,
    /// Updates not yet visible in the GSI, in write order.
    propagating: VecDeque<IndexChange>,
    stream: Vec<StreamRecord>,
    sequence: u64,
    writes: u64,
    /// Write capacity units as DynamoDB bills them (see [`MemStore::write_units`]).
    write_units: WriteUnits,
    /// Items handed out by Query and Scan (each is decoded by its reader).
    items_read: u64,
    conflicts: u64,
    faults: VecDeque<Fault>,
    /// Items per Scan page (DynamoDB pages by 1 MB); 0 means the default.
    page_items: usize,
}

/// Write capacity units billed so far, and what the same writes would cost without
/// transactions: what fencing every plan in a TransactWriteItems costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteUnits {
    /// As billed: 1 per started KB of the larger of the old and new item for a standard
    /// write; 2 per KB for each Put, Delete and ConditionCheck of a transaction.
    pub billed: u64,
    /// The same writes made one by one, without the condition checks.
    pub unfenced: u64,
    pub transactions: u64,
}

/// DynamoDB's write unit: one per started KB, at least one.
fn kb(bytes: usize) -> u64 {
    bytes.div_ceil(1024).max(1) as u64
}

/// Items per Scan page unless [`MemStore::with_page_size`] says otherwise.
pub const DEFAULT_PAGE_ITEMS: usize = 100;

impl MemStore {
    pub fn new(clock: Arc<dyn Clock>) -> MemStore {
        MemStore {
            clock,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// GSI eventual consistency: an index entry becomes visible `lag` after its write
    /// (DynamoDB: usually under a second). Zero, the default, makes it immediate.
    pub fn with_index_lag(self, lag: Duration) -> MemStore {
        self.lock().index_lag = lag;
        self
    }

    /// At most `items` items per Scan page (at least 1), so a partition straddles pages
    /// as it does in DynamoDB.
    pub fn with_page_size(self, items: usize) -> MemStore {
        self.lock().page_items = items.max(1);
        self
    }

    /// Drains the change stream, oldest record first.
    pub fn take_stream(&self) -> Vec<StreamRecord> {
        std::mem::take(&mut self.lock().stream)
    }

    /// Every item, in key order.
    pub fn items(&self) -> Vec<Item> {
        self.lock().items.values().cloned().collect()
    }

    /// Lets `f` look at every item in place, without copying them (the simulator checks
    /// its invariants after every step this way).
    pub fn with_items<R>(&self, f: impl FnOnce(&BTreeMap<ItemKey, Item>) -> R) -> R {
        f(&self.lock().items)
    }

    /// One item, read consistently.
    pub fn get(&self, key: &ItemKey) -> Option<Item> {
        self.lock().items.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Successful write requests (puts and deletes, including a delete of an absent
    /// item, which DynamoDB also bills), not counting failed conditions.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// Write capacity units billed so far, fenced and as if unfenced.
    pub fn write_units(&self) -> WriteUnits {
        self.lock().write_units
    }

    /// Items returned by Query and Scan so far: what the readers decode. Read it around
    /// a reconcile to see how many items it read (the performance benchmarks do).
    pub fn items_read(&self) -> u64 {
        self.lock().items_read
    }

    /// Writes refused because their condition did not hold.
    pub fn conflicts(&self) -> u64 {
        self.lock().conflicts
    }

    /// The next call of a `Store` method fails with `err` and has no effect. Calls
    /// queue up: arming twice fails the next two calls.
    pub fn fail_next(&self, err: StoreError) {
        self.lock().faults.push_back(Fault::Before(err));
    }

    /// The next call of a `Store` method takes effect, then reports `err`: a timeout
    /// or 5xx whose request did succeed. Queues up with [`MemStore::fail_next`].
    pub fn fail_next_after_effect(&self, err: StoreError) {
        self.lock().faults.push_back(Fault::After(err));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one store call under the armed fault, if any.
    fn call<T>(
        &self,
        op: impl FnOnce(&mut State, Timestamp) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let now = self.clock.now();
        let mut state = self.lock();
        state.settle_index(now);
        match state.faults.pop_front() {
            Some(Fault::Before(err)) => Err(err),
            Some(Fault::After(err)) => op(&mut state, now).and(Err(err)),
            None => op(&mut state, now),
        }
    }
}

impl State {
    /// Applies the index updates that have become visible by `now`, in write order.
    fn settle_index(&mut self, now: Timestamp) {
        while self
            .propagating
            .front()
            .is_some_and(|c| c.visible_at <= now)
        {
            let Some(change) = self.propagating.pop_front() else {
                break;
            };
            if let Some(old) = self.index.remove(&change.key) {
                let emptied = self.by_instance.get_mut(&old).is_some_and(|keys| {
                    keys.remove(&change.key);
                    keys.is_empty()
                });
                if emptied {
                    self.by_instance.remove(&old);
                }
            }
            if let Some(id) = change.instance_id {
                self.by_instance
                    .entry(id.clone())
                    .or_default()
                    .insert(change.key.clone());
                self.index.insert(change.key, id);
            }
        }
    }

    fn check(&mut self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        let holds = match (expect, self.items.get(key)) {
            (Expect::Any, _) => true,
            (Expect::Absent, current) => current.is_none(),
            (Expect::Version(_), None) => false,
            (Expect::Version(rv), Some(item)) => version_of(item) == rv,
        };
        if holds {
            Ok(())
        } else {
            self.conflicts += 1;
            Err(StoreError::Conflict)
        }
    }

    /// Replaces (or removes) one item and records the change.
    fn write(&mut self, now: Timestamp, key: ItemKey, new: Option<Item>) {
        self.writes += 1;
        let old = match &new {
            Some(item) => self.items.insert(key.clone(), item.clone()),
            None => self.items.remove(&key),
        };
        let kind = match (&old, &new) {
            (None, None) => return,
            (None, Some(_)) => ChangeKind::Insert,
            (Some(_), Some(_)) => ChangeKind::Modify,
            (Some(_), None) => ChangeKind::Remove,
        };
        let (old_projection, new_projection) = (
            old.as_ref().and_then(indexed_instance),
            new.as_ref().and_then(indexed_instance),
        );
        if old_projection != new_projection {
            self.propagating.push_back(IndexChange {
                visible_at: after(now, self.index_lag),
                key: key.clone(),
                instance_id: new_projection,
            });
            self.settle_index(now);
        }
        self.sequence += 1;
        self.stream.push(StreamRecord {
            sequence: self.sequence,
            kind,
            key,
            old_image: old,
            new_image: new,
        });
    }
}

impl Store for MemStore {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        self.call(|state, _| {
            if pk.is_empty() {
                return Err(invalid("the partition key value may not be empty"));
            }
            let prefix = sk_prefix.unwrap_or("");
            let start = ItemKey {
                pk: pk.to_string(),
                sk: prefix.to_string(),
            };
            let items: Vec<Item> = state
                .items
                .range(start..)
                .take_while(|(k, _)| k.pk == pk && k.sk.starts_with(prefix))
                .map(|(_, item)| item.clone())
                .collect();
            state.items_read += items.len() as u64;
            Ok(items)
        })
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        self.call(|state, now| {
            let key = validate(&item)?;
            state.check(&key, expect)?;
            let units = kb(item_size(&item).max(state.items.get(&key).map_or(0, item_size)));
            state.write_units.billed += units;
            state.write_units.unfenced += units;
            state.write(now, key, Some(item));
            Ok(())
        })
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        self.call(|state, now| {
            if key.pk.is_empty() || key.sk.is_empty() {
                return Err(invalid("the key attributes may not be empty strings"));
            }
            state.check(key, expect)?;
            let units = kb(state.items.get(key).map_or(0, item_size));
            state.write_units.billed += units;
            state.write_units.unfenced += units;
            state.write(now, key.clone(), None);
            Ok(())
        })
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.call(|state, now| {
            if writes.is_empty() || writes.len() > MAX_TRANSACT_WRITES {
                return Err(invalid(&format!(
                    "Member must have length less than or equal to {MAX_TRANSACT_WRITES} and greater than or equal to 1 (found {})",
                    writes.len()
                )));
            }
            let mut keys = BTreeSet::new();
            let mut bytes = 0;
            for w in &writes {
                let key = match w {
                    Write::Put { item, .. } => {
                        bytes += item_size(item);
                        validate(item)?
                    }
                    Write::Delete { key, .. } | Write::Check { key, .. } => {
                        if key.pk.is_empty() || key.sk.is_empty() {
                            return Err(invalid("the key attributes may not be empty strings"));
                        }
                        key.clone()
                    }
                };
                if !keys.insert(key) {
                    return Err(invalid(
                        "Transaction request cannot include multiple operations on one item",
                    ));
                }
            }
            if bytes > MAX_TRANSACTION_BYTES {
                return Err(invalid("Transaction size has exceeded the maximum allowed"));
            }
            // Every condition first: a transaction is all or nothing.
            for w in &writes {
                let (key, expect) = match w {
                    Write::Put { item, expect } => (item_key(item), *expect),
                    Write::Delete { key, expect } | Write::Check { key, expect } => {
                        (Some(key.clone()), *expect)
                    }
                };
                if let Some(key) = key {
                    state.check(&key, expect)?;
                }
            }
            state.write_units.transactions += 1;
            for w in &writes {
                let (existing, new, check) = match w {
                    Write::Put { item, .. } => (
                        item_key(item).and_then(|k| state.items.get(&k)).map_or(0, item_size),
                        item_size(item),
                        false,
                    ),
                    Write::Delete { key, .. } => (state.items.get(key).map_or(0, item_size), 0, false),
                    Write::Check { key, .. } => (state.items.get(key).map_or(0, item_size), 0, true),
                };
                let units = kb(existing.max(new));
                state.write_units.billed += 2 * units;
                if !check {
                    state.write_units.unfenced += units;
                }
            }
            for w in writes {
                match w {
                    Write::Put { item, .. } => {
                        if let Some(key) = item_key(&item) {
                            state.write(now, key, Some(item));
                        }
                    }
                    Write::Delete { key, .. } => state.write(now, key, None),
                    Write::Check { .. } => {}
                }
            }
            Ok(())
        })
    }

    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        self.call(|state, _| {
            if instance_id.is_empty() {
                return Err(invalid("the index key value may not be empty"));
            }
            Ok(state
                .by_instance
                .get(instance_id)
                .map(|keys| keys.iter().take(MAX_INSTANCE_MATCHES).cloned().collect())
                .unwrap_or_default())
        })
    }

    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        self.call(|state, _| {
            let size = match state.page_items {
                0 => DEFAULT_PAGE_ITEMS,
                n => n,
            };
            let from = match &start {
                Some(k) => std::ops::Bound::Excluded(k.clone()),
                None => std::ops::Bound::Unbounded,
            };
            let mut items = Vec::new();
            let mut last = None;
            // As DynamoDB's Limit: a page evaluates at most `size` items, then filters.
            for (key, item) in state
                .items
                .range((from, std::ops::Bound::Unbounded))
                .take(size)
            {
                last = Some(key.clone());
                if key.sk.starts_with(sk_prefix) {
                    items.push(item.clone());
                }
            }
            let more = last.as_ref().is_some_and(|l| {
                state
                    .items
                    .range((
                        std::ops::Bound::Excluded(l.clone()),
                        std::ops::Bound::Unbounded,
                    ))
                    .next()
                    .is_some()
            });
            state.items_read += items.len() as u64;
            Ok(ScanPage {
                items,
                next: if more { last } else { None },
            })
        })
    }
}

/// What the sparse index holds for an item: its `instanceId`, when it is a string.
fn indexed_instance(item: &Item) -> Option<String> {
    match item.get(INSTANCE_ID) {
        Some(AttrValue::S(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

fn invalid(message: &str) -> StoreError {
    StoreError::Rejected(format!(
        "ValidationException: One or more parameter values were invalid: {message}"
    ))
}

/// Checks an item the way PutItem does and returns its key.
fn validate(item: &Item) -> Result<ItemKey, StoreError> {
    for attr in [PK, SK] {
        match item.get(attr) {
            Some(AttrValue::S(s)) if !s.is_empty() => {}
            Some(AttrValue::S(_)) => {
                return Err(invalid(&format!(
                    "An AttributeValue may not contain an empty string. Key: {attr}"
                )));
            }
            Some(other) => {
                return Err(invalid(&format!(
                    "Type mismatch for key {attr} expected: S actual: {}",
                    type_name(other)
                )));
            }
            None => return Err(invalid(&format!("Missing the key {attr} in the item"))),
        }
    }
    match item.get(INSTANCE_ID) {
        None => {}
        Some(AttrValue::S(s)) if !s.is_empty() => {}
        Some(AttrValue::S(_)) => {
            return Err(invalid(&format!(
                "A value specified for a secondary index key is not supported. The AttributeValue for a key attribute cannot contain an empty string value. IndexName: {INSTANCE_INDEX}, IndexKey: {INSTANCE_ID}"
            )));
        }
        Some(other) => {
            return Err(invalid(&format!(
                "Type mismatch for Index Key {INSTANCE_ID} Expected: S Actual: {} IndexName: {INSTANCE_INDEX}",
                type_name(other)
            )));
        }
    }
    if let Some((name, n)) = item.iter().find_map(|(k, v)| bad_number(v).map(|n| (k, n))) {
        return Err(invalid(&format!(
            "attribute {name}: '{n}' is not a valid number"
        )));
    }
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(StoreError::Rejected(
            "ValidationException: Item size has exceeded the maximum allowed size".into(),
        ));
    }
    item_key(item).ok_or_else(|| invalid("Missing the key in the item"))
}

fn type_name(v: &AttrValue) -> &'static str {
    match v {
        AttrValue::S(_) => "S",
        AttrValue::N(_) => "N",
        AttrValue::Bool(_) => "BOOL",
        AttrValue::Null => "NULL",
        AttrValue::L(_) => "L",
        AttrValue::M(_) => "M",
    }
}

/// The first number anywhere in `v` that DynamoDB would refuse.
fn bad_number(v: &AttrValue) -> Option<&str> {
    match v {
        AttrValue::N(n) => {
            let ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                && n.parse::<f64>().is_ok_and(f64::is_finite);
            (!ok).then_some(n.as_str())
        }
        AttrValue::L(l) => l.iter().find_map(bad_number),
        AttrValue::M(m) => m.values().find_map(bad_number),
        _ => None,
    }
}
