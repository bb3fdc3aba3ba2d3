//! Captures the process's log lines so tests can check that refusals are logged.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Captured> = OnceLock::new();

/// Installs the capturing subscriber (once per process) and returns the buffer.
pub fn capture() -> Captured {
    LOGS.get_or_init(|| {
        let c = Captured::default();
        let w = c.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,rumqttd=warn")
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        c
    })
    .clone()
}

impl Captured {
    /// Log lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned).collect()
    }
}
