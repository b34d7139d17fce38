//! A shutdown signal shared by every listener of a process.

use tokio::sync::watch;

/// The sending side: call [`Shutdown::trigger`] once, on SIGTERM or Ctrl-C.
#[derive(Debug, Clone)]
pub struct Shutdown {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

/// The receiving side, handed to each listener.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    receiver: watch::Receiver<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (sender, _) = watch::channel(false);
        Self {
            sender: std::sync::Arc::new(sender),
        }
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            receiver: self.sender.subscribe(),
        }
    }

    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownSignal {
    /// Resolves once shutdown has been triggered (at once if it already was).
    pub async fn triggered(&mut self) {
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }
}
