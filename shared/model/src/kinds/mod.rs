//! The six kinds, one module each. Spec sub-structs take their defaults from
//! `crate::defaults` (container-level `#[serde(default)]`), so a field left out of a
//! manifest gets the same value everywhere.

pub mod cluster;
pub mod health_check;
mod int_or_percent;
pub mod machine;
pub mod machine_class;
pub mod machine_deployment;
pub mod machine_set;

pub use cluster::*;
pub use health_check::*;
pub use int_or_percent::IntOrPercent;
pub use machine::*;
pub use machine_class::*;
pub use machine_deployment::*;
pub use machine_set::*;
