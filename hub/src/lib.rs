//! The supervision hub: storage, the sensor pipeline, the HTTP API, and the wiring that runs
//! them with the MQTT sources of `ingest` and the models and rules of `inference`.
//!
//! The hub knows nothing of GStreamer or RTSP; sources hand it messages, `inference` hands it
//! hits.
#![recursion_limit = "256"]

pub mod accounts;
pub mod api;
pub mod app;
pub mod auth;
pub mod broker_accounts;
pub mod cameras;
pub mod delivery;
#[cfg(feature = "sim")]
pub mod demo;
pub mod error;
pub mod evidence;
pub mod live;
pub mod outputs;
pub mod pipeline;
pub mod records;
pub mod registry;
pub mod store;
pub mod supervise;
pub mod ui;

pub use app::{Hub, StartOptions};
pub use error::Error;
