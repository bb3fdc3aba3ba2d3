//! One shutdown token, passed explicitly to every long-lived task.
//!
//! The first Ctrl-C / SIGTERM cancels the token (graceful: stages drain and flush); a second one
//! exits the process at once.

use tokio_util::sync::CancellationToken;

/// A cloneable handle: `cancelled().await` in `select!`, `trigger()` to start shutdown.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    pub async fn cancelled(&self) {
        self.0.cancelled().await
    }

    /// The underlying token, for APIs that take one.
    pub fn token(&self) -> CancellationToken {
        self.0.clone()
    }

    /// A token cancelled with this one, that can also be cancelled on its own (one stage).
    pub fn child(&self) -> Shutdown {
        Shutdown(self.0.child_token())
    }

    /// Cancels on the first SIGINT/SIGTERM; exits the process with status 130 on the second.
    pub fn install_signal_handlers(&self) {
        let token = self.clone();
        tokio::spawn(async move {
            wait_signal().await;
            tracing::info!("shutdown requested; draining (signal again to exit at once)");
            token.trigger();
            wait_signal().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
    }
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
