//! A daemon's lifecycle: resolve config (file, then flags), validate it
//! whole, open listeners, build the daemon, serve, reload on SIGHUP, drain on
//! SIGTERM/SIGINT. [`main`] is the process entry a daemon's `main.rs` calls;
//! [`run`] is the library entry that takes listeners already open, for tests.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;

use crate::config::{ConfigError, DaemonConfig};
use crate::exit::{self, Failure};
use crate::flags::CommonFlags;
use crate::grpc::Router;
pub use crate::grpc::Services;
use crate::{listen, logging, metrics, systemd};

/// An error from a daemon's own code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long in-flight RPCs get to finish after SIGTERM before they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What a daemon's library provides to the plumbing.
pub trait Daemon: Sized + Send + Sync + 'static {
    /// The daemon's name: its socket, default config file and log field.
    const NAME: &'static str;
    /// Its config file's type.
    type Config: DaemonConfig;
    /// Builds the daemon from a validated config, registering its metrics.
    fn build(config: &Self::Config, registry: &mut Registry) -> Result<Self, BoxError>;
    /// The gRPC services it serves (health and reflection are added).
    /// Streams should end when `shutdown` is cancelled.
    fn services(&self, shutdown: &CancellationToken) -> Services;
    /// Applies a new, already validated config (SIGHUP).
    fn reload(&self, config: Self::Config) -> impl Future<Output = Result<(), BoxError>> + Send;
    /// Last work before the process exits, after the gRPC servers have
    /// drained (hbd hands its group over here). The default does nothing.
    fn stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A config resolved from file and flags, validated, with its TLS files read.
pub struct Resolved<C> {
    /// The config.
    pub config: C,
    /// Where it came from, for messages: the file, or "defaults".
    pub origin: String,
    /// The gRPC Unix socket.
    pub socket: PathBuf,
    /// The TCP listener's TLS config, when there is one.
    pub tls: Option<ServerTlsConfig>,
}

/// A daemon's own flags, applied over its config after the common ones.
pub type OwnFlags<C> = Arc<dyn Fn(&mut C) + Send + Sync>;

/// Loads `name`'s config: `--config`, else `/etc/tandem/<name>.yaml` if it
/// exists, else defaults; then the flags over it (common, then the
/// daemon's own); then validation of the whole.
pub fn resolve<C: DaemonConfig>(
    name: &str,
    flags: &CommonFlags,
    own: &OwnFlags<C>,
) -> Result<Resolved<C>, ConfigError> {
    let default_path = PathBuf::from(format!("/etc/tandem/{name}.yaml"));
    let path = flags
        .config
        .clone()
        .or_else(|| default_path.exists().then_some(default_path));
    let (mut config, origin) = match &path {
        Some(path) => (crate::config::load::<C>(path)?, path.display().to_string()),
        None => (C::default(), "defaults".to_owned()),
    };
    flags.apply(config.settings_mut())?;
    own(&mut config);
    config.validate(&origin)?;
    let settings = config.settings();
    let socket = settings
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/run/tandem/{name}.sock")));
    let tls = settings
        .tcp
        .as_ref()
        .map(|tcp| listen::server_tls(tcp, &origin))
        .transpose()?;
    Ok(Resolved {
        config,
        origin,
        socket,
        tls,
    })
}

/// What a daemon listens on, already open.
pub struct Listeners {
    /// The gRPC Unix socket and its path (removed on exit).
    pub unix: (UnixListener, PathBuf),
    /// The optional TCP listener and its mutual-TLS config.
    pub tcp: Option<(TcpListener, ServerTlsConfig)>,
    /// The optional `/metrics` listener.
    pub metrics: Option<TcpListener>,
}

/// The process entry point: returns the exit code systemd acts on.
pub fn main<D: Daemon>(flags: &CommonFlags) -> ExitCode {
    main_with::<D>(flags, Arc::new(|_| {}))
}

/// [`main`] for a daemon with flags of its own: `own` applies them to the
/// config read from the file (at start and at every reload).
pub fn main_with<D: Daemon>(flags: &CommonFlags, own: OwnFlags<D::Config>) -> ExitCode {
    let resolved = match resolve::<D::Config>(D::NAME, flags, &own) {
        Ok(resolved) => resolved,
        Err(e) => return fail(D::NAME, &Failure::Config(e)),
    };
    if flags.check_config {
        println!("{}: config OK ({})", D::NAME, resolved.origin);
        return ExitCode::from(exit::OK);
    }
    logging::init(resolved.config.settings().log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(D::NAME, &Failure::Runtime(format!("starting tokio: {e}"))),
    };
    match runtime.block_on(start::<D>(resolved, flags.clone(), own)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => fail(D::NAME, &e),
    }
}

fn fail(name: &str, failure: &Failure) -> ExitCode {
    eprintln!("{name}: {failure}");
    tracing::error!(daemon = name, error = %failure, "exiting");
    failure.exit_code()
}

async fn start<D: Daemon>(
    resolved: Resolved<D::Config>,
    flags: CommonFlags,
    own: OwnFlags<D::Config>,
) -> Result<(), Failure> {
    // Before the socket exists: a client may connect (and signal) as soon
    // as it does, while the daemon is still being built.
    let signals = Signals::install()?;
    let settings = resolved.config.settings();
    let unix = listen::bind_unix(&resolved.socket)?;
    let tcp = match (&settings.tcp, resolved.tls) {
        (Some(tcp), Some(tls)) => Some((bind_tcp(tcp.listen, "gRPC").await?, tls)),
        _ => None,
    };
    let metrics = match settings.metrics_listen {
        Some(addr) => Some(bind_tcp(addr, "metrics").await?),
        None => None,
    };
    let mut registry = Registry::with_prefix("tandem");
    metrics::register_build_info(&mut registry, D::NAME);
    let daemon = D::build(&resolved.config, &mut registry)
        .map_err(|e| Failure::Runtime(format!("starting {}: {e}", D::NAME)))?;
    let daemon = Arc::new(daemon);
    let shutdown = CancellationToken::new();
    let settings = settings.clone();
    // The daemon keeps what it needs; a large config is not held twice.
    drop(resolved.config);
    spawn_signal_handler(
        Arc::clone(&daemon),
        signals,
        (flags, own),
        settings,
        shutdown.clone(),
    );
    tracing::info!(daemon = D::NAME, config = %resolved.origin, socket = %resolved.socket.display(), "starting");
    let listeners = Listeners {
        unix: (unix, resolved.socket),
        tcp,
        metrics,
    };
    run(daemon.as_ref(), listeners, Arc::new(registry), shutdown).await
}

async fn bind_tcp(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::Runtime(format!("binding {what} listener {addr}: {e}")))
}

/// SIGTERM, SIGINT and SIGHUP, caught from the moment they are installed
/// (a signal before anyone listens is kept, not lost).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, Failure> {
        let install = |kind| {
            signal(kind).map_err(|e| Failure::Runtime(format!("installing signal handler: {e}")))
        };
        Ok(Self {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
            hup: install(SignalKind::hangup())?,
        })
    }
}

fn spawn_signal_handler<D: Daemon>(
    daemon: Arc<D>,
    mut signals: Signals,
    flags: (CommonFlags, OwnFlags<D::Config>),
    settings: crate::config::DaemonSettings,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = signals.term.recv() => break,
                _ = signals.int.recv() => break,
                _ = signals.hup.recv() => reload(daemon.as_ref(), &flags.0, &flags.1, &settings).await,
            }
        }
        tracing::info!(daemon = D::NAME, "shutting down");
        shutdown.cancel();
    });
}

/// Re-reads the config and hands it to the daemon; a bad config changes nothing.
async fn reload<D: Daemon>(
    daemon: &D,
    flags: &CommonFlags,
    own: &OwnFlags<D::Config>,
    running: &crate::config::DaemonSettings,
) {
    systemd::reloading();
    match resolve::<D::Config>(D::NAME, flags, own) {
        Err(e) => tracing::error!(daemon = D::NAME, error = %e, "reload refused: config unchanged"),
        Ok(resolved) => {
            if resolved.config.settings() != running {
                tracing::warn!(
                    daemon = D::NAME,
                    "the daemon section changed: it takes effect at the next restart"
                );
            }
            match daemon.reload(resolved.config).await {
                Ok(()) => tracing::info!(daemon = D::NAME, config = %resolved.origin, "reloaded"),
                Err(e) => tracing::error!(daemon = D::NAME, error = %e, "reload failed"),
            }
        }
    }
    systemd::ready();
}

/// Serves `daemon` on `listeners` until `shutdown` is cancelled, then drains
/// in-flight calls for up to [`SHUTDOWN_GRACE`] and removes the socket file.
pub async fn run<D: Daemon>(
    daemon: &D,
    listeners: Listeners,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let services = daemon.services(&shutdown);
    let names = services.names().to_vec();
    let router = Router::new(services)
        .await
        .map_err(|e| Failure::Runtime(e.to_string()))?;
    let mut servers = JoinSet::new();
    let (unix, socket_path) = listeners.unix;
    servers.spawn(
        router
            .clone()
            .serve_unix(unix, shutdown.clone().cancelled_owned()),
    );
    if let Some((tcp, tls)) = listeners.tcp {
        servers.spawn(
            router
                .clone()
                .serve_tcp(tcp, tls, shutdown.clone().cancelled_owned()),
        );
    }
    if let Some(listener) = listeners.metrics {
        tokio::spawn(metrics::serve(listener, registry, shutdown.clone()));
    }
    systemd::ready();
    systemd::spawn_watchdog(shutdown.clone());

    let mut failure = None;
    tokio::select! {
        biased;
        () = shutdown.cancelled() => {}
        Some(ended) = servers.join_next() => {
            // A server that ended because shutdown began is not a failure.
            if !shutdown.is_cancelled() {
                failure = Some(server_failure(ended));
                shutdown.cancel();
            }
        }
    }
    systemd::stopping();
    for name in names {
        router
            .health()
            .set_service_status(name, tonic_health::ServingStatus::NotServing)
            .await;
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            daemon = D::NAME,
            "in-flight calls cut after the shutdown grace period"
        );
        servers.abort_all();
    }
    daemon.stop().await;
    if let Err(e) = std::fs::remove_file(&socket_path) {
        tracing::debug!(error = %e, "removing the socket");
    }
    failure.map_or(Ok(()), Err)
}

fn server_failure(
    ended: Result<Result<(), crate::grpc::ServeError>, tokio::task::JoinError>,
) -> Failure {
    match ended {
        Ok(Ok(())) => Failure::Runtime("a gRPC server stopped unexpectedly".into()),
        Ok(Err(e)) => Failure::Runtime(e.to_string()),
        Err(e) => Failure::Runtime(format!("a gRPC server task failed: {e}")),
    }
}
