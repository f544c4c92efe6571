//! systemd notification: READY=1 once serving, RELOADING=1/READY=1 around a
//! reload, STOPPING=1 on the way out, and WATCHDOG=1 at half the watchdog
//! period from a task on the daemon's runtime, so a stalled runtime stops
//! the pings and systemd restarts it. Without `NOTIFY_SOCKET` these do nothing.

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the daemon is serving.
pub fn ready() {
    notify(&[NotifyState::Ready]);
}

/// Tells systemd a reload started.
pub fn reloading() {
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        notify(&[NotifyState::Reloading, now]);
    }
}

/// Tells systemd the daemon is shutting down.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its period until `shutdown`, if systemd asked for one.
pub fn spawn_watchdog(shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => notify(&[NotifyState::Watchdog]),
            }
        }
    });
}
