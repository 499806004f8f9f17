//! The table in SQLite: the `Store` port with DynamoDB's semantics, shared by every
//! process that opens the same file (`capstan up` and the commands of another terminal).
//!
//! How the port's contract is kept:
//! - **Conditional writes across processes.** Every write runs in a `BEGIN IMMEDIATE`
//!   transaction, which takes SQLite's write lock before reading: the condition is
//!   checked and the item written with no other writer in between, whichever process
//!   it is in. A failed condition rolls back and is `Conflict`; nothing changes.
//! - **Transactions** (`transact`) check every condition, then write every item, in the
//!   same one transaction: all or none.
//! - **The change stream, NEW_AND_OLD_IMAGES, in order per key.** Each write appends a
//!   row to `stream` in the same transaction as the item: a record exists exactly when
//!   its write committed, and `seq` (AUTOINCREMENT, never reused) orders them, across
//!   processes, in commit order. Readers keep their position in `cursors`.
//! - **The sparse instance index.** `items.instance_id` is set from the item's
//!   `instanceId` (when a non-empty string) with a partial index on it; it is updated in
//!   the write's transaction, so it is consistent at once (DynamoDB's GSI is eventually
//!   consistent: being early is allowed).
//! - **Strongly consistent reads.** Queries read the committed state (WAL mode: readers
//!   never wait for the writer).
//!
//! Items are stored in DynamoDB's JSON wire form, so nothing is lost between the types.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use capstan_model::item::{AttrValue, INSTANCE_ID, Item, ItemKey, PK, SK, version_of};
use capstan_runtime::wire::{item_from_wire, item_to_wire};
use capstan_runtime::{
    ChangeKind, Expect, MAX_INSTANCE_MATCHES, MAX_TRANSACT_WRITES, ScanPage, Store, StoreError,
    StreamRecord, Write,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

/// DynamoDB's item size limit.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// Items per Scan page.
const PAGE_ITEMS: usize = 100;
/// How long a writer waits for another process's transaction before giving up
/// (`Unavailable`, which callers retry).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    item TEXT NOT NULL,
    instance_id TEXT,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_by_instance ON items (instance_id) WHERE instance_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS stream (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    kind TEXT NOT NULL,
    old_image TEXT,
    new_image TEXT
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, instance TEXT NOT NULL);
";

/// The table in one SQLite file. Clones share the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn invalid(message: &str) -> StoreError {
    StoreError::Rejected(format!(
        "ValidationException: One or more parameter values were invalid: {message}"
    ))
}

impl SqliteStore {
    /// Opens (creating if needed) the table at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(unavailable)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(unavailable)?;
        // WAL: readers see the last commit without waiting for a writer; NORMAL
        // synchronous is durable across a process crash (the case here).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every item, in key order.
    pub fn items(&self) -> Result<Vec<Item>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT item FROM items ORDER BY pk, sk")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unavailable)?;
        rows.map(|r| r.map_err(unavailable).and_then(|t| decode(&t)))
            .collect()
    }

    /// Stream records after `after`, oldest first, at most `max`.
    pub fn stream_after(&self, after: u64, max: usize) -> Result<Vec<StreamRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT seq, pk, sk, kind, old_image, new_image FROM stream WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![after as i64, max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, pk, sk, kind, old, new) = row.map_err(unavailable)?;
            let kind = match kind.as_str() {
                "INSERT" => ChangeKind::Insert,
                "MODIFY" => ChangeKind::Modify,
                _ => ChangeKind::Remove,
            };
            out.push(StreamRecord {
                sequence: u64::try_from(seq).unwrap_or(0),
                kind,
                key: ItemKey { pk, sk },
                old_image: old.as_deref().map(decode).transpose()?,
                new_image: new.as_deref().map(decode).transpose()?,
            });
        }
        Ok(out)
    }

    /// Where the reader `name` stopped in the stream (0: the beginning).
    pub fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let seq: Option<i64> = conn
            .query_row("SELECT seq FROM cursors WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(unavailable)?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    pub fn set_cursor(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            params![name, seq as i64],
        )
        .map_err(unavailable)?;
        Ok(())
    }

    /// The simulated instances as last saved, as JSON documents.
    pub fn saved_instances(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT instance FROM instances ORDER BY id")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(unavailable)?;
        rows.map(|r| {
            r.map_err(unavailable).and_then(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Rejected(format!("a saved instance: {e}")))
            })
        })
        .collect()
    }

    /// Replaces the saved instances with `instances` ((id, JSON) pairs), in one transaction.
    pub fn save_instances(&self, instances: &[(String, String)]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        tx.execute("DELETE FROM instances", [])
            .map_err(unavailable)?;
        for (id, json) in instances {
            tx.execute(
                "INSERT INTO instances (id, instance) VALUES (?1, ?2)",
                params![id, json],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }

    /// Checks every condition, then applies every write, in one immediate transaction.
    fn write_all(&self, writes: &[Write]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(unavailable)?;
        let mut current = Vec::new();
        for w in writes {
            let (key, expect) = match w {
                Write::Put { item, expect } => (validate(item)?, *expect),
                Write::Delete { key, expect } | Write::Check { key, expect } => {
                    if key.pk.is_empty() || key.sk.is_empty() {
                        return Err(invalid("the key attributes may not be empty strings"));
                    }
                    (key.clone(), *expect)
                }
            };
            let old: Option<String> = tx
                .query_row(
                    "SELECT item FROM items WHERE pk = ?1 AND sk = ?2",
                    params![key.pk, key.sk],
                    |r| r.get(0),
                )
                .optional()
                .map_err(unavailable)?;
            let old_item = old.as_deref().map(decode).transpose()?;
            let holds = match (expect, &old_item) {
                (Expect::Any, _) => true,
                (Expect::Absent, current) => current.is_none(),
                (Expect::Version(_), None) => false,
                (Expect::Version(rv), Some(item)) => version_of(item) == rv,
            };
            if !holds {
                // Dropping the transaction rolls it back: nothing changes.
                return Err(StoreError::Conflict);
            }
            current.push((key, old));
        }
        for (w, (key, old)) in writes.iter().zip(current) {
            let new = match w {
                Write::Check { .. } => continue,
                Write::Put { item, .. } => Some(item),
                Write::Delete { .. } => None,
            };
            let kind = match (&old, &new) {
                (None, None) => continue,
                (None, Some(_)) => "INSERT",
                (Some(_), Some(_)) => "MODIFY",
                (Some(_), None) => "REMOVE",
            };
            let new_text = new.map(|i| item_to_wire(i).to_string());
            match (new, &new_text) {
                (Some(item), Some(text)) => {
                    tx.execute(
                        "INSERT INTO items (pk, sk, item, instance_id) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (pk, sk) DO UPDATE SET item = excluded.item, instance_id = excluded.instance_id",
                        params![key.pk, key.sk, text, indexed_instance(item)],
                    )
                    .map_err(unavailable)?;
                }
                _ => {
                    tx.execute(
                        "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                        params![key.pk, key.sk],
                    )
                    .map_err(unavailable)?;
                }
            }
            tx.execute(
                "INSERT INTO stream (pk, sk, kind, old_image, new_image) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.pk, key.sk, kind, old, new_text],
            )
            .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
    }
}

fn decode(text: &str) -> Result<Item, StoreError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| StoreError::Rejected(format!("a stored item is not JSON: {e}")))?;
    item_from_wire(&value).map_err(|e| StoreError::Rejected(format!("a stored item: {e}")))
}

fn indexed_instance(item: &Item) -> Option<String> {
    match item.get(INSTANCE_ID) {
        Some(AttrValue::S(id)) if !id.is_empty() => Some(id.clone()),
        _ => None,
    }
}

/// Checks an item the way PutItem does and returns its key.
fn validate(item: &Item) -> Result<ItemKey, StoreError> {
    let key = |attr: &str| match item.get(attr) {
        Some(AttrValue::S(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(&format!(
            "the key attribute {attr} must be a non-empty string"
        ))),
    };
    let key = ItemKey {
        pk: key(PK)?,
        sk: key(SK)?,
    };
    if capstan_model::item::item_size(item) > MAX_ITEM_BYTES {
        return Err(invalid("Item size has exceeded the maximum allowed size"));
    }
    Ok(key)
}

impl Store for SqliteStore {
    async fn query(&self, pk: &str, sk_prefix: Option<&str>) -> Result<Vec<Item>, StoreError> {
        if pk.is_empty() {
            return Err(invalid("the partition key value may not be empty"));
        }
        let prefix = sk_prefix.unwrap_or("");
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT sk, item FROM items WHERE pk = ?1 AND sk >= ?2 ORDER BY sk")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![pk, prefix], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for row in rows {
            let (sk, text) = row.map_err(unavailable)?;
            if !sk.starts_with(prefix) {
                break;
            }
            out.push(decode(&text)?);
        }
        Ok(out)
    }

    async fn put(&self, item: Item, expect: Expect) -> Result<(), StoreError> {
        self.write_all(&[Write::Put { item, expect }])
    }

    async fn delete(&self, key: &ItemKey, expect: Expect) -> Result<(), StoreError> {
        self.write_all(&[Write::Delete {
            key: key.clone(),
            expect,
        }])
    }

    async fn find_by_instance(&self, instance_id: &str) -> Result<Vec<ItemKey>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT pk, sk FROM items WHERE instance_id = ?1 ORDER BY pk, sk LIMIT ?2")
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![instance_id, MAX_INSTANCE_MATCHES as i64], |r| {
                Ok(ItemKey {
                    pk: r.get(0)?,
                    sk: r.get(1)?,
                })
            })
            .map_err(unavailable)?;
        rows.map(|r| r.map_err(unavailable)).collect()
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() || writes.len() > MAX_TRANSACT_WRITES {
            return Err(invalid(&format!(
                "a transaction holds 1 to {MAX_TRANSACT_WRITES} writes (found {})",
                writes.len()
            )));
        }
        let mut keys = std::collections::BTreeSet::new();
        for w in &writes {
            if let Some(key) = w.key()
                && !keys.insert(key)
            {
                return Err(invalid(
                    "Transaction request cannot include multiple operations on one item",
                ));
            }
        }
        self.write_all(&writes)
    }

    async fn scan_page(
        &self,
        sk_prefix: &str,
        start: Option<ItemKey>,
    ) -> Result<ScanPage, StoreError> {
        let (pk, sk) = start.map_or((String::new(), String::new()), |k| (k.pk, k.sk));
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT pk, sk, item FROM items WHERE (pk > ?1 OR (pk = ?1 AND sk > ?2)) ORDER BY pk, sk LIMIT ?3",
            )
            .map_err(unavailable)?;
        let rows = stmt
            .query_map(params![pk, sk, PAGE_ITEMS as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(unavailable)?;
        let mut items = Vec::new();
        let mut last = None;
        let mut read = 0;
        for row in rows {
            let (pk, sk, text) = row.map_err(unavailable)?;
            read += 1;
            if sk.starts_with(sk_prefix) {
                items.push(decode(&text)?);
            }
            last = Some(ItemKey { pk, sk });
        }
        Ok(ScanPage {
            items,
            // A full page may have more after it; a short one was the last.
            next: if read == PAGE_ITEMS { last } else { None },
        })
    }
}
