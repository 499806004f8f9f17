//! Capstan's handlers, the ports they act through, the Lambda entry points
//! (`functions`) and the one loop that drives them everywhere Lambda does not
//! (`driver`), and the reconcile dispatcher's grouping of the work queue (`dispatch`). Depends on `capstan-model` and `capstan-reconcile`; never on an AWS
//! SDK crate (adapters implement the ports elsewhere).

pub mod ports;
pub mod routes;

pub use ports::*;
pub mod autoscale;
pub mod control_plane;
pub mod dispatch;
pub mod drain;
pub mod driver;
pub mod events;
pub mod functions;
pub mod handlers;
mod launch_batch;
pub mod metrics;
pub mod node;
pub mod requeue;
pub mod sweep;
mod terminate_batch;

pub use control_plane::{ControlPlane, HandlerError, NoWorkload};
pub use handlers::{BatchOutcome, Delivery};
pub mod apply;
pub mod describe;
pub mod system;
pub mod table;
pub mod wire;
