//! The whole table read as trees, one per cluster partition: what `capstan up`, the
//! endpoint runtime and the simulator look at to judge convergence.

use std::collections::BTreeMap;

use capstan_model::Item;
use capstan_model::item::item_key;
use capstan_reconcile::Tree;

use crate::describe;

/// Groups items by partition and reads each partition as a Tree (keyed by pk). Items
/// without Capstan's keys are skipped.
pub fn trees_by_partition(items: impl IntoIterator<Item = Item>) -> BTreeMap<String, Tree> {
    let mut by_pk: BTreeMap<String, Vec<Item>> = BTreeMap::new();
    for item in items {
        if let Some(key) = item_key(&item) {
            by_pk.entry(key.pk).or_default().push(item);
        }
    }
    by_pk
        .into_iter()
        .map(|(pk, items)| (pk, Tree::from_items(&items)))
        .collect()
}

/// Everything that keeps the table from having converged: every object reconciled and
/// Ready, every Machine Running, and no event still waiting on a queue.
pub fn not_converged<'a>(trees: impl IntoIterator<Item = &'a Tree>, queued: u64) -> Vec<String> {
    let mut problems: Vec<String> = trees
        .into_iter()
        .flat_map(describe::not_converged)
        .collect();
    if queued > 0 {
        problems.push(format!("{queued} events still queued"));
    }
    problems
}
