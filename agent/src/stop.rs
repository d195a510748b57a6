//! Telling the agent's loops to stop, and the operator's signals.

use tokio::sync::watch;

/// The sending side: [`StopHandle::stop`] makes every [`StopSignal`] fire.
#[derive(Debug)]
pub struct StopHandle(watch::Sender<bool>);

/// The receiving side, cheap to clone into each loop.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Receiver<bool>);

/// A new stop handle and its signal.
pub fn stop_pair() -> (StopHandle, StopSignal) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(tx), StopSignal(rx))
}

impl StopHandle {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl StopSignal {
    /// Completes once stop was requested. If the handle is gone without
    /// asking, it never completes.
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// SIGTERM and Ctrl-C (SIGINT), as one stream of "please stop" requests;
/// or, for tests and embedding, requests sent on a channel.
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    ctrl_c: bool,
    manual: Option<tokio::sync::mpsc::UnboundedReceiver<&'static str>>,
}

impl Signals {
    /// Installs the handlers; from now on the signals no longer kill the process.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: Some(tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            )?),
            ctrl_c: true,
            manual: None,
        })
    }

    /// Requests come only from the returned sender (whose messages name the
    /// "signal"); dropping the sender never stops the agent.
    pub fn manual() -> (tokio::sync::mpsc::UnboundedSender<&'static str>, Self) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let signals = Self {
            #[cfg(unix)]
            term: None,
            ctrl_c: false,
            manual: Some(rx),
        };
        (tx, signals)
    }

    /// Waits for the next request and returns its name.
    pub async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        let term = async {
            match self.term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        let manual = async {
            match self.manual.as_mut() {
                Some(rx) => match rx.recv().await {
                    Some(name) => name,
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let listen_ctrl_c = self.ctrl_c;
        tokio::select! {
            _ = term => "SIGTERM",
            _ = ctrl_c(), if listen_ctrl_c => "SIGINT",
            name = manual => name,
        }
    }
}

async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // Could not listen for Ctrl-C: rely on SIGTERM alone.
        std::future::pending::<()>().await;
    }
}
