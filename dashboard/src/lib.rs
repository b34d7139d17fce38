//! The dashboard: a live page of the whole CDN for operators.
//!
//! It owns reading every node's admin `/metrics` each refresh interval ([`series`]), turning
//! two readings into the fleet's view ([`view`]: rates, hit ratios, origin offload, health,
//! DNS answers and anycast routes per client network, workers, video, purges) and serving the
//! page, its assets (embedded in the binary), the view as JSON and as Server-Sent Events, and
//! the operator's actions (purge, drain, undrain) behind the admin token ([`Dashboard`]).
//!
//! It keeps no history (that is Prometheus' job; `deploy/grafana/` has a board) and changes
//! nothing on the nodes but through their admin APIs.

pub mod series;
mod server;
pub mod view;

pub use server::{Dashboard, DashboardSettings};
