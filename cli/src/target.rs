//! A context turned into something the verbs can read and write: the one place that
//! knows where a command's table is.
//!
//! - **local**: the embedded control plane on virtual time, remembered as a journal of
//!   the writes people made (`<dir>/journal.jsonl`). Each command replays the journal
//!   into a fresh control plane — deterministically: same seed, same virtual clock, so
//!   the same uids and instance ids every time — makes its own write, runs the control
//!   plane until the tree converges (idle virtual time is skipped, so this takes
//!   milliseconds), and appends the write to the journal. Nothing keeps running
//!   between commands, and there is one writer at a time (the journal is locked while
//!   a command holds it).
//! - **endpoint** and **aws**: the installation's DynamoDB table, through the same
//!   `DynamoStore` the functions use; its control plane (`capstan run` or Lambda) does
//!   the rest, and waiting means polling.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use capstan_embedded::{Embedded, EmbeddedConfig, RunOutcome};
use capstan_model::{Item, Object, ObjectKey, Timestamp};
use capstan_reconcile::Tree;
use capstan_runtime::apply::Applied;
use capstan_runtime::table;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Context, NamedContext};

/// The seed every replay of the local control plane uses: replays must agree.
const LOCAL_SEED: u64 = 1;
/// How much virtual time the local control plane is given to converge after a write.
const LOCAL_SETTLE: Duration = Duration::from_secs(3600);

/// The global options that pick a target.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// `--context NAME`.
    pub context: Option<String>,
    /// `--endpoint URL` (with `--installation`, `--region`, `--table`): an ad-hoc
    /// endpoint context, as the first `apply --endpoint` took it.
    pub endpoint: Option<String>,
    pub installation: Option<String>,
    pub region: Option<String>,
    #[cfg_attr(not(feature = "aws"), allow(dead_code))]
    pub table: Option<String>,
}

impl Selector {
    /// The context these options name.
    pub fn resolve(&self) -> anyhow::Result<NamedContext> {
        if let Some(url) = &self.endpoint {
            return Ok(NamedContext {
                name: "(--endpoint)".into(),
                context: Context::Endpoint {
                    url: url.clone(),
                    installation: self
                        .installation
                        .clone()
                        .unwrap_or_else(|| "capstan".into()),
                    region: self.region.clone(),
                },
            });
        }
        let config = Config::load(&crate::config::path()?)?;
        config.resolve(self.context.as_deref())
    }
}

// One Target per command: boxing the local control plane would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    Local(Local),
    /// The local context where `capstan up` keeps a control plane (its state file exists).
    Running(Running),
    #[cfg(feature = "aws")]
    Remote(Remote),
}

impl Target {
    /// Opens the context `selector` names.
    pub async fn open(selector: &Selector) -> anyhow::Result<Target> {
        let named = selector.resolve()?;
        match named.context {
            Context::Local { dir } if dir.join(capstan_local::STATE_FILE).exists() => {
                Ok(Target::Running(Running::open(&dir)?))
            }
            Context::Local { dir } => Ok(Target::Local(Local::open(&dir).await?)),
            #[cfg(feature = "aws")]
            Context::Endpoint {
                url,
                installation,
                region,
            } => Ok(Target::Remote(
                Remote::open(
                    Some(url),
                    region,
                    None,
                    installation.clone(),
                    selector.table.clone().unwrap_or(installation.clone()),
                    named.name,
                )
                .await,
            )),
            #[cfg(feature = "aws")]
            Context::Aws {
                region,
                installation,
                profile,
            } => Ok(Target::Remote(
                Remote::open(
                    None,
                    Some(region),
                    profile,
                    installation.clone(),
                    selector.table.clone().unwrap_or(installation.clone()),
                    named.name,
                )
                .await,
            )),
            #[cfg(not(feature = "aws"))]
            Context::Endpoint { .. } | Context::Aws { .. } => anyhow::bail!(
                "context {:?} needs AWS support: build capstan with its default feature `aws`",
                named.name
            ),
        }
    }

    /// Where commands go, for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Local(l) => format!("the local control plane in {}", l.dir.display()),
            Target::Running(r) => format!(
                "the local control plane of `capstan up` in {}",
                r.dir.display()
            ),
            #[cfg(feature = "aws")]
            Target::Remote(r) => format!("table {:?} ({})", r.table, r.context),
        }
    }

    /// The target's clock: virtual time on the local control plane, the wall clock
    /// elsewhere. Ages are measured against it.
    pub fn now(&self) -> Timestamp {
        match self {
            Target::Local(l) => l.cp.now(),
            Target::Running(_) => Timestamp::now(),
            #[cfg(feature = "aws")]
            Target::Remote(_) => Timestamp::now(),
        }
    }

    /// Every item of the table.
    pub async fn items(&self) -> anyhow::Result<Vec<Item>> {
        match self {
            Target::Local(l) => Ok(l.cp.store.items()),
            Target::Running(r) => r
                .store
                .items()
                .with_context(|| format!("reading {}", r.dir.display())),
            #[cfg(feature = "aws")]
            Target::Remote(r) => {
                use capstan_runtime::Store;
                r.store.scan("").await.with_context(|| {
                    format!(
                        "reading table {:?} ({}): is the installation there and its table created?",
                        r.table, r.context
                    )
                })
            }
        }
    }

    /// Every cluster partition of the table, as trees.
    pub async fn trees(&self) -> anyhow::Result<Vec<Tree>> {
        Ok(table::trees_by_partition(self.items().await?)
            .into_values()
            .collect())
    }

    /// Writes the objects' desired items (`capstan apply`).
    pub async fn apply(&mut self, objects: &[Object]) -> anyhow::Result<Vec<Applied>> {
        match self {
            Target::Local(l) => l.apply(objects, true).await,
            Target::Running(r) => capstan_runtime::apply::apply(&r.store, objects)
                .await
                .with_context(|| format!("applying to {}", r.dir.display())),
            #[cfg(feature = "aws")]
            Target::Remote(r) => capstan_runtime::apply::apply(&r.store, objects)
                .await
                .with_context(|| {
                    format!(
                        "applying to table {:?} ({}): is `capstan run` (or the installation) there? it creates the table",
                        r.table, r.context
                    )
                }),
        }
    }

    /// Changes one object's desired state with `change`, conditionally on the version
    /// read: when someone else wrote it in between, it is read again and `change`
    /// applied on top of theirs, so neither edit is lost (`scale`, `rollout`).
    pub async fn edit(
        &mut self,
        key: &ObjectKey,
        change: &mut dyn FnMut(&mut Object) -> anyhow::Result<()>,
    ) -> anyhow::Result<Applied> {
        match self {
            Target::Local(l) => {
                let (applied, object) = edit_in(&l.cp.store, key, change).await?;
                if !matches!(applied, Applied::Unchanged(_)) {
                    l.record(&Entry::Apply(vec![desired_json(&object)]))?;
                    l.settle().await?;
                }
                Ok(applied)
            }
            Target::Running(r) => Ok(edit_in(&r.store, key, change).await?.0),
            #[cfg(feature = "aws")]
            Target::Remote(r) => Ok(edit_in(&r.store, key, change).await?.0),
        }
    }

    /// Removes an annotation from an object, also while it is being deleted (a
    /// deletion hook let go); false if it did not carry it.
    pub async fn remove_annotation(
        &mut self,
        key: &ObjectKey,
        annotation: &str,
    ) -> anyhow::Result<bool> {
        let context = || format!("removing {annotation} from {key}");
        match self {
            Target::Local(l) => l.remove_annotation(key, annotation, true).await,
            Target::Running(r) => {
                capstan_runtime::apply::remove_annotation(&r.store, key, annotation)
                    .await
                    .with_context(context)
            }
            #[cfg(feature = "aws")]
            Target::Remote(r) => {
                capstan_runtime::apply::remove_annotation(&r.store, key, annotation)
                    .await
                    .with_context(context)
            }
        }
    }

    /// Removes each object's desired item (`capstan delete`), in order; false for one
    /// that had none. The local control plane runs once all are gone, as a running
    /// one would barely have started between them.
    pub async fn delete(&mut self, keys: &[ObjectKey]) -> anyhow::Result<Vec<bool>> {
        match self {
            Target::Local(l) => l.delete(keys, true).await,
            Target::Running(r) => {
                let mut found = Vec::new();
                for key in keys {
                    found.push(
                        capstan_runtime::apply::delete(&r.store, key)
                            .await
                            .with_context(|| format!("deleting {key} from {}", r.dir.display()))?,
                    );
                }
                Ok(found)
            }
            #[cfg(feature = "aws")]
            Target::Remote(r) => {
                let mut found = Vec::new();
                for key in keys {
                    found.push(
                        capstan_runtime::apply::delete(&r.store, key)
                            .await
                            .with_context(|| {
                                format!("deleting {key} from table {:?} ({})", r.table, r.context)
                            })?,
                    );
                }
                Ok(found)
            }
        }
    }

    /// How long to sleep between polls while waiting; zero on the local control
    /// plane, which has converged before a command returns.
    pub fn poll_interval(&self) -> Duration {
        match self {
            Target::Local(_) => Duration::ZERO,
            Target::Running(_) => Duration::from_millis(250),
            #[cfg(feature = "aws")]
            Target::Remote(_) => Duration::from_secs(1),
        }
    }
}

/// One write people made, as the local journal keeps it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Entry {
    /// Objects applied (metadata people set and spec, without status).
    Apply(Vec<serde_json::Value>),
    /// Desired items deleted by one command.
    Delete(Vec<ObjectKey>),
    /// An annotation removed (`capstan annotate … KEY-`), from the observed item of an
    /// object being deleted too: how a deletion hook is let go.
    RemoveAnnotation(ObjectKey, String),
}

/// The local control plane, replayed from its journal.
pub struct Local {
    pub dir: PathBuf,
    pub cp: Embedded,
    /// None for a replica that is never written back.
    journal: Option<PathBuf>,
    /// Held while the command runs: one writer at a time.
    _lock: Option<File>,
}

impl Local {
    /// Replays `dir`'s journal into a fresh control plane on virtual time.
    pub async fn open(dir: &Path) -> anyhow::Result<Local> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .with_context(|| format!("opening {}", dir.join("lock").display()))?;
        lock.lock().with_context(|| {
            format!(
                "locking {}: another capstan command holds it",
                dir.display()
            )
        })?;
        let journal = dir.join("journal.jsonl");
        let mut local = Local {
            dir: dir.to_path_buf(),
            cp: Embedded::virtual_time(EmbeddedConfig::default(), LOCAL_SEED),
            journal: Some(journal.clone()),
            _lock: Some(lock),
        };
        let entries = match File::open(&journal) {
            Ok(f) => BufReader::new(f)
                .lines()
                .enumerate()
                .map(|(n, line)| {
                    let line = line.with_context(|| format!("reading {}", journal.display()))?;
                    serde_json::from_str::<Entry>(&line).with_context(|| {
                        format!(
                            "{} line {}: not a journal entry; remove the directory to start afresh",
                            journal.display(),
                            n + 1
                        )
                    })
                })
                .collect::<anyhow::Result<Vec<Entry>>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", journal.display()));
            }
        };
        for entry in entries {
            match entry {
                Entry::Apply(values) => {
                    let objects = values
                        .into_iter()
                        .map(|v| {
                            capstan_model::decode_object(v).map_err(|errors| {
                                anyhow::anyhow!(
                                    "{}: an entry no longer reads: {}",
                                    journal.display(),
                                    errors
                                        .iter()
                                        .map(|e| e.to_string())
                                        .collect::<Vec<_>>()
                                        .join("; ")
                                )
                            })
                        })
                        .collect::<anyhow::Result<Vec<Object>>>()?;
                    local.apply(&objects, false).await?;
                }
                Entry::Delete(keys) => {
                    local.delete(&keys, false).await?;
                }
                Entry::RemoveAnnotation(key, annotation) => {
                    local.remove_annotation(&key, &annotation, false).await?;
                }
            }
        }
        Ok(local)
    }

    /// Applies, runs the control plane until it converges, and (when `record`)
    /// appends the write to the journal.
    pub async fn apply(
        &mut self,
        objects: &[Object],
        record: bool,
    ) -> anyhow::Result<Vec<Applied>> {
        let applied = self.cp.apply(objects).await.context("applying")?;
        let changed = applied.iter().any(|a| !matches!(a, Applied::Unchanged(_)));
        if record && changed {
            let values = objects.iter().map(desired_json).collect();
            self.record(&Entry::Apply(values))?;
        }
        if changed {
            self.settle().await?;
        }
        Ok(applied)
    }

    pub async fn delete(&mut self, keys: &[ObjectKey], record: bool) -> anyhow::Result<Vec<bool>> {
        let mut found = Vec::new();
        for key in keys {
            let was = self
                .cp
                .delete(key)
                .await
                .with_context(|| format!("deleting {key}"))?;
            found.push(was);
        }
        let deleted: Vec<ObjectKey> = keys
            .iter()
            .zip(&found)
            .filter(|(_, was)| **was)
            .map(|(k, _)| k.clone())
            .collect();
        if !deleted.is_empty() {
            if record {
                self.record(&Entry::Delete(deleted))?;
            }
            self.settle().await?;
        }
        Ok(found)
    }

    /// Removes an annotation (see [`capstan_runtime::apply::remove_annotation`]),
    /// runs the control plane until it settles, and (when `record`) journals it.
    pub async fn remove_annotation(
        &mut self,
        key: &ObjectKey,
        annotation: &str,
        record: bool,
    ) -> anyhow::Result<bool> {
        let removed = self
            .cp
            .remove_annotation(key, annotation)
            .await
            .with_context(|| format!("removing {annotation} from {key}"))?;
        if removed {
            if record {
                self.record(&Entry::RemoveAnnotation(key.clone(), annotation.into()))?;
            }
            self.settle().await?;
        }
        Ok(removed)
    }

    /// Runs until every tree converged (or an hour of virtual time passed: what did
    /// not converge then stays as it is, and `get`/`describe` say why).
    pub async fn settle(&mut self) -> anyhow::Result<RunOutcome> {
        self.settle_watching(|_| {}).await
    }

    /// [`Local::settle`], calling `watch` after every idle step.
    pub async fn settle_watching(
        &mut self,
        watch: impl FnMut(&Embedded),
    ) -> anyhow::Result<RunOutcome> {
        self.cp
            .run_until(
                LOCAL_SETTLE,
                |cp| {
                    let problems = cp.not_converged();
                    (!problems.is_empty()).then_some(problems)
                },
                watch,
            )
            .await
            .context("running the local control plane")
    }

    /// A control plane that is only read and planned on, never remembered.
    pub fn replica(cp: Embedded) -> Local {
        Local {
            dir: PathBuf::new(),
            cp,
            journal: None,
            _lock: None,
        }
    }

    fn record(&self, entry: &Entry) -> anyhow::Result<()> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut line = serde_json::to_string(entry).context("encoding a journal entry")?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal)
            .with_context(|| format!("opening {}", journal.display()))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .with_context(|| format!("writing {}", journal.display()))
    }
}

/// How often an edit is tried again after losing a race to another writer.
const EDIT_RETRIES: usize = 10;

async fn edit_in<S: capstan_runtime::Store>(
    store: &S,
    key: &ObjectKey,
    change: &mut dyn FnMut(&mut Object) -> anyhow::Result<()>,
) -> anyhow::Result<(Applied, Object)> {
    use capstan_model::item::{
        Part, RV, encode_desired, item_key, object_prefix, partition_key, version_of,
    };
    use capstan_model::{Expect, ItemKey};
    let pk = partition_key(&key.namespace, &key.cluster);
    for _ in 0..EDIT_RETRIES {
        let items = store
            .query(&pk, Some(&object_prefix(key.kind, &key.name)))
            .await
            .with_context(|| format!("reading {key}"))?;
        let want = ItemKey::of(key, Part::Desired);
        let Some(desired) = items.iter().find(|i| item_key(i).as_ref() == Some(&want)) else {
            anyhow::bail!("{key} is gone (or being deleted): nothing to edit");
        };
        let rv = version_of(desired);
        let Some(stored) = Tree::from_items(&items).get(key.kind, &key.name).cloned() else {
            anyhow::bail!("{key} cannot be read back: see `capstan describe`");
        };
        let mut object = stored.object;
        change(&mut object)?;
        object.metadata_mut().clear_system_fields();
        let without_version = |mut item: Item| {
            item.remove(RV);
            item
        };
        if without_version(encode_desired(&object, rv)) == without_version(desired.clone()) {
            return Ok((Applied::Unchanged(key.clone()), object));
        }
        match store
            .put(encode_desired(&object, rv + 1), Expect::Version(rv))
            .await
        {
            Ok(()) => return Ok((Applied::Configured(key.clone()), object)),
            Err(capstan_runtime::StoreError::Conflict) => continue,
            Err(e) => return Err(e).with_context(|| format!("writing {key}")),
        }
    }
    anyhow::bail!("{key} kept changing under this edit ({EDIT_RETRIES} tries): try again")
}

/// What a person wrote of an object: metadata without the control plane's fields, and spec.
fn desired_json(object: &Object) -> serde_json::Value {
    let mut object = object.clone();
    object.metadata_mut().clear_system_fields();
    let mut value = object.to_json();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    value
}

/// The state `capstan up` keeps in `<dir>/state.db`, opened beside it: reads and
/// conditional writes go to the same SQLite file its control plane works from.
pub struct Running {
    pub dir: PathBuf,
    pub store: capstan_local::SqliteStore,
}

impl Running {
    fn open(dir: &Path) -> anyhow::Result<Running> {
        let path = dir.join(capstan_local::STATE_FILE);
        let store = capstan_local::SqliteStore::open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Running {
            dir: dir.to_path_buf(),
            store,
        })
    }
}

/// An installation's table, at an endpoint or in AWS.
#[cfg(feature = "aws")]
pub struct Remote {
    pub store: capstan_aws::DynamoStore,
    pub clients: capstan_aws::Clients,
    pub installation: String,
    pub table: String,
    /// The context's name, for messages.
    pub context: String,
}

#[cfg(feature = "aws")]
impl Remote {
    async fn open(
        endpoint: Option<String>,
        region: Option<String>,
        profile: Option<String>,
        installation: String,
        table: String,
        context: String,
    ) -> Remote {
        let clients = capstan_aws::Clients::load(&capstan_aws::Settings {
            endpoint,
            region,
            profile,
        })
        .await;
        Remote {
            store: capstan_aws::DynamoStore::new(clients.dynamodb.clone(), &table),
            clients,
            installation,
            table,
            context,
        }
    }
}
