//! Capstan's reconcile decisions. Every step is `(snapshot, now) -> Plan`: pure, no
//! I/O, no async, no clock read, no AWS crate. The runtime reads a [`Tree`], calls
//! [`decide`], performs the [`Plan`]'s actions, and comes back when told to.
//!
//! Layout: one module per kind (`cluster`, `deployment`, `machine_set`, `machine`,
//! `machine_class`, `health_check`), `lifecycle` for what every kind shares (taking a
//! new object in, generations, deletion), `node` for what a Machine learns from its
//! Node, `drain` for taking the Node out of its cluster before the instance goes, `launch` for how a Machine's instance is
//! described to EC2, `launch_batch` for identical launches sharing one call, `bootstrap` for the user data that joins a node to its cluster.

pub mod autoscale;
pub mod autoscale_pools;
pub mod bootstrap;
pub mod cluster;
pub mod conditions;
pub mod deployment;
pub mod drain;
pub mod health_check;
pub mod launch;
pub mod launch_batch;
pub mod lifecycle;
pub mod machine;
pub mod machine_class;
pub mod machine_set;
pub mod names;
pub mod node;
pub mod plan;
pub mod tree;

pub use autoscale::{ScalingDecision, ScalingSnapshot, decide_scaling};
pub use bootstrap::{
    BootstrapError, EksCluster, EksNodeInput, NodeTaint, TaintEffect, eks_user_data,
    machine_user_data,
};
pub use lifecycle::{Ctx, decide};
pub use plan::{Action, Plan};
pub use tree::Tree;
