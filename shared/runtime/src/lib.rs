//! Capstan's handlers, the ports they act through, and the local runtime that
//! drives them. Depends on `capstan-model` and `capstan-reconcile`; never on an AWS
//! SDK crate (adapters implement the ports elsewhere).

pub mod ports;
pub mod routes;

pub use ports::*;
pub mod control_plane;
pub mod events;
pub mod handlers;
pub mod sweep;

pub use control_plane::{ControlPlane, HandlerError};
pub use handlers::{BatchOutcome, Delivery};
pub mod apply;
pub mod describe;
pub mod system;
