//! Capstan's resources (`capstan.dev/v1alpha1`): the six kinds, their defaults and
//! validation, YAML and JSON in and out, and the DynamoDB item codec.
//!
//! Pure: no I/O beyond parsing the bytes it is given, no async, no AWS crates.

pub mod decode_memo;
pub mod defaults;
pub mod hash;
pub mod item;
pub mod kinds;
pub mod labels;
pub mod launch;
pub mod manifest;
pub mod meta;
pub mod object;
pub mod parse;
pub mod quantity;
#[cfg(feature = "schema")]
pub mod schema;
pub mod user_data;
pub mod validate;

pub use item::{AttrValue, Expect, Item, ItemKey, Part, StoredObject};
pub use jiff::Timestamp;
pub use kinds::*;
pub use launch::LaunchRequest;
pub use manifest::{
    DocumentError, ManifestErrors, check_references, read_manifests, read_sources, to_json,
    to_yaml, validate_set,
};
pub use meta::{Condition, ConditionStatus, Conditions, LabelSelector, ObjectMeta, OwnerReference};
pub use object::{
    API_VERSION, Cluster, Kind, Machine, MachineClass, MachineDeployment, MachineHealthCheck,
    MachineSet, Object, ObjectKey, Resource,
};
pub use parse::{FieldError, decode_object};
pub use validate::validate_object;
