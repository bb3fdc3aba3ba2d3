//! The hub's configuration: a TOML file deserialized into the structs of [`schema`], then checked
//! by [`Config::validate`], which reports every problem at once with its path (`devices[2].site`)
//! and, where the file has it, line and column.
//!
//! This crate knows the shape of the configuration and nothing of how it is used: it does not open
//! sockets, databases or models.

mod locate;
pub mod schema;
mod validate;

pub use schema::*;

use std::fmt;
use std::path::Path;

/// Environment variables that override secrets, endpoints and logging (and nothing else).
pub mod env {
    /// Overrides `database.url`.
    pub const DATABASE_URL: &str = "HUB_DATABASE_URL";
    /// Overrides `mqtt.url` (external mode).
    pub const MQTT_URL: &str = "HUB_MQTT_URL";
    /// Overrides `mqtt.password` (external mode).
    pub const MQTT_PASSWORD: &str = "HUB_MQTT_PASSWORD";
    /// Overrides `mqtt.dynsec_password` (external mode, Mosquitto dynamic security).
    pub const MQTT_DYNSEC_PASSWORD: &str = "HUB_MQTT_DYNSEC_PASSWORD";
    /// Overrides `http.listen`.
    pub const HTTP_LISTEN: &str = "HUB_HTTP_LISTEN";
    /// Log filter, `tracing_subscriber::EnvFilter` syntax (e.g. `info,hub=debug`).
    pub const LOG: &str = "HUB_LOG";
    /// The password of the first admin, created at the first start with no users (a random
    /// one is printed once otherwise).
    pub const ADMIN_PASSWORD: &str = "HUB_ADMIN_PASSWORD";
}

/// One problem found in a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where in the document: `sites[0].uscc`; empty for the whole document.
    pub path: String,
    /// 1-based line and column, when the file has the item.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

/// Every problem of one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file name (or `<string>`).
    pub origin: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{}: {n} problem{}", self.origin, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "  {}", self.origin)?;
            if let Some((line, col)) = p.position {
                write!(f, ":{line}:{col}")?;
            }
            if p.path.is_empty() {
                writeln!(f, ": {}", p.message)?;
            } else {
                writeln!(f, ": {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            problems: vec![Problem {
                path: String::new(),
                position: None,
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses and validates configuration text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError { origin: origin.to_owned(), problems };
        let config = validate::deserialize_all(text).map_err(fail)?;
        let mut problems = config.validate();
        if problems.is_empty() {
            return Ok(config);
        }
        locate::fill_positions(text, &mut problems);
        Err(fail(problems))
    }

    /// The commented default configuration, as `hub config print-default` prints it.
    pub fn default_toml() -> &'static str {
        include_str!("default.toml")
    }

    /// Applies the documented environment overrides.
    pub fn apply_env(&mut self) {
        if let Ok(v) = std::env::var(env::DATABASE_URL) {
            self.database.url = v;
        }
        if let Ok(v) = std::env::var(env::MQTT_URL) {
            self.mqtt.url = Some(v);
        }
        if let Ok(v) = std::env::var(env::MQTT_PASSWORD) {
            self.mqtt.password = Some(v);
        }
        if let Ok(v) = std::env::var(env::MQTT_DYNSEC_PASSWORD) {
            self.mqtt.dynsec_password = Some(v);
        }
        if let Ok(v) = std::env::var(env::HTTP_LISTEN) {
            self.http.listen = v;
        }
    }
}

#[cfg(test)]
mod tests;
