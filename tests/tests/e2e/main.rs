//! End-to-end tests against real components: the embedded broker and Mosquitto, SQLite and
//! PostgreSQL, ONNX Runtime with the project's model. One binary, so it links once.

mod access;
mod api;
mod bad_input;
mod camera;
mod device_clock;
mod docker;
mod durability;
mod dynsec;
mod findings_store;
mod gateway_limits;
mod layering;
mod live;
mod logs;
mod offline;
mod record_delivery;
mod record_mqtt;
mod records;
mod scenario;
mod shared_group;
mod shared_registry;
mod verdict;
mod video;
