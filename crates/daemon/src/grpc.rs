//! Serving a daemon's gRPC services, with `grpc.health.v1` and server
//! reflection (v1 and v1alpha, so grpcurl and grpcio's reflection client both
//! work) added to every daemon. Unix socket always; TCP only with mutual TLS.

use std::convert::Infallible;
use std::future::Future;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;

/// The gRPC services a daemon serves, besides health and reflection.
#[derive(Clone, Default)]
pub struct Services {
    routes: Routes,
    names: Vec<&'static str>,
}

impl Services {
    /// No services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `svc`; it is reported SERVING by `grpc.health.v1`.
    #[must_use]
    pub fn with<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes = self.routes.add_service(svc);
        self
    }

    /// The fully qualified names of the services added, e.g. `tandem.resource.v1.Resource`.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// A reflection builder that advertises only the services served here (not
/// every service in the descriptor set), plus health and reflection itself.
fn reflection(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tandem_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    names
        .iter()
        .fold(builder, |builder, name| builder.with_service_name(*name))
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection service could not be built from the descriptors.
    #[error("building gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The daemon's services plus health and reflection, ready to serve on any
/// number of listeners.
#[derive(Clone)]
pub struct Router {
    routes: Routes,
    health: HealthReporter,
}

impl Router {
    /// Adds health (each service SERVING) and reflection to `services`.
    pub async fn new(services: Services) -> Result<Self, ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        for name in services.names() {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let reflection_v1 = reflection(services.names()).build_v1()?;
        let reflection_v1alpha = reflection(services.names()).build_v1alpha()?;
        let routes = services
            .routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        Ok(Self { routes, health })
    }

    /// The health reporter, to mark services NOT_SERVING while shutting down.
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Serves on a Unix socket until `shutdown` completes.
    pub async fn serve_unix(
        self,
        listener: UnixListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        Server::builder()
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }

    /// Serves on TCP with mutual TLS until `shutdown` completes.
    pub async fn serve_tcp(
        self,
        listener: TcpListener,
        tls: ServerTlsConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        Server::builder()
            .tls_config(tls)?
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }
}
