//! hbd's API as tests and benchmarks use it: the cluster view, and the
//! event stream (`WatchEvents`) collected in the background so a caller can
//! wait for an event and read when hbd says it happened.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tandem_proto::hb::v1 as hb;

/// Wall-clock milliseconds since the Unix epoch, as in an event's `unix_ms`.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The cluster view of the hbd serving on `socket` (`GetCluster`).
pub fn cluster(socket: &Path) -> hb::Cluster {
    let socket = socket.to_owned();
    crate::block_on(async move {
        let channel = tandem_daemon::client::connect_unix(&socket)
            .await
            .expect("connecting to hbd");
        hb::membership_client::MembershipClient::new(channel)
            .get_cluster(hb::GetClusterRequest {})
            .await
            .expect("GetCluster")
            .into_inner()
    })
}

/// Every event one hbd emits from the moment it was started.
pub struct EventLog {
    events: Arc<Mutex<Vec<hb::Event>>>,
}

impl EventLog {
    /// Subscribes to the hbd serving on `socket`; returns once subscribed.
    pub fn start(socket: &Path) -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let socket = socket.to_owned();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            crate::block_on(async move {
                let channel = tandem_daemon::client::connect_unix(&socket)
                    .await
                    .expect("connecting to hbd");
                let mut stream = hb::membership_client::MembershipClient::new(channel)
                    .watch_events(hb::WatchEventsRequest {})
                    .await
                    .expect("WatchEvents")
                    .into_inner();
                let _ = ready_tx.send(());
                while let Some(Ok(event)) = stream.next().await {
                    sink.lock().expect("event log lock").push(event);
                }
            });
        });
        ready
            .recv_timeout(Duration::from_secs(5))
            .expect("subscribed to hbd's events within 5 s");
        Self { events }
    }

    /// The events so far.
    pub fn all(&self) -> Vec<hb::Event> {
        self.events.lock().expect("event log lock").clone()
    }

    /// The first event of `kind` so far.
    pub fn find(&self, kind: hb::EventKind) -> Option<hb::Event> {
        self.all().into_iter().find(|e| e.kind == kind as i32)
    }

    /// The first event of `kind`, waiting up to `limit`; panics with the
    /// events seen otherwise.
    pub fn wait(&self, kind: hb::EventKind, limit: Duration) -> hb::Event {
        let start = tokio::time::Instant::now();
        while start.elapsed() < limit {
            if let Some(e) = self.find(kind) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no {kind:?} event within {limit:?}: {:?}", self.all());
    }
}
