//! End-to-end tests against real components: the embedded broker and Mosquitto, SQLite and
//! PostgreSQL, ONNX Runtime with the project's model. One binary, so it links once.

mod api;
mod bad_input;
mod camera;
mod findings_store;
mod layering;
mod logs;
mod offline;
mod scenario;
mod shared_group;
mod video;
