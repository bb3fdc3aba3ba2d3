//! Simulated sites and load generators that speak the hub's MQTT contract with real
//! credentials, usable in-process (the demo, the tests) or standalone (`devices site`,
//! `devices load`) against any hub.
//!
//! - [`sim`]: device models (cold-chain fridges and reefer trucks, ammonia detectors, a
//!   weighbridge) with realistic noise, daily cycles and scripted anomalies.
//! - [`scenario`]: the demo site, its anomaly script, and the findings it must produce.
//! - [`site`]: runs a scenario over MQTT, paced or as fast as the broker takes it.
//! - [`load`]: the load generator of the benchmark.
//! - [`department`]: a department's case system reading record events over MQTT (the demo's).
//!
//! This crate knows nothing of the hub's internals: only the topic and payload contract.

pub mod camera;
pub mod credentials;
pub mod department;
pub mod load;
pub mod scenario;
pub mod sim;
pub mod site;

/// Wall-clock unix milliseconds: payload timestamps and pacing.
pub(crate) fn wall_ms() -> i64 {
    use common::Clock;
    common::SystemClock.now_ms()
}
