//! `http` and `https` with hyper: one request on a fresh connection (a
//! kept-alive connection would hide a server that accepts no new ones),
//! then the status, then at most `max_body` bytes of body for `receive`.
//! HTTPS sends SNI when the host is a name; verification is a switch.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tandem_ipvsd::check::CheckClose;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{Dial, ProbeError};
use crate::target::HttpPlan;

const USER_AGENT: http::HeaderValue = http::HeaderValue::from_static("tandem-checkd");
const CLOSE: http::HeaderValue = http::HeaderValue::from_static("close");

/// The two TLS client configs HTTPS checks use.
pub struct TlsConfigs {
    verifying: Arc<ClientConfig>,
    trusting: Arc<ClientConfig>,
}

impl TlsConfigs {
    /// Verifying against the system's trust store; and trusting any
    /// certificate (still checking the handshake's signatures).
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "reading the system's trusted certificates");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, "system certificates for HTTPS checks");
        let builder = |provider: Arc<CryptoProvider>| {
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap_or_else(|_| unreachable!("ring supports the default versions"))
        };
        let mut verifying = builder(provider.clone())
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut trusting = builder(provider.clone())
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(TrustAny(provider)))
            .with_no_client_auth();
        for config in [&mut verifying, &mut trusting] {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        Self {
            verifying: Arc::new(verifying),
            trusting: Arc::new(trusting),
        }
    }
}

impl Default for TlsConfigs {
    fn default() -> Self {
        Self::new()
    }
}

/// Accepts any certificate chain (`verify_tls: false`): reals usually serve
/// the VIP's certificate, not one for their own address.
#[derive(Debug)]
struct TrustAny(Arc<CryptoProvider>);

impl ServerCertVerifier for TrustAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One request where `dial` says, as `plan` says.
pub async fn probe(dial: &Dial, plan: &HttpPlan, tls: &TlsConfigs) -> Result<(), ProbeError> {
    let tcp = Closing {
        // The request (or TLS's ClientHello) goes at once.
        stream: super::tcp::connect(dial, true).await?,
        reset: dial.close == CheckClose::Reset,
    };
    match plan.tls {
        None => exchange(tcp, plan).await,
        // Boxed: a TLS exchange's state is twice a plain one's, and every
        // probe's future is as large as its largest kind.
        Some(verify) => Box::pin(tls_exchange(tcp, verify, plan, tls)).await,
    }
}

/// The TLS handshake, then the exchange over it.
async fn tls_exchange(
    tcp: Closing<TcpStream>,
    verify: bool,
    plan: &HttpPlan,
    tls: &TlsConfigs,
) -> Result<(), ProbeError> {
    let config = if verify {
        &tls.verifying
    } else {
        &tls.trusting
    };
    let stream = TlsConnector::from(config.clone())
        .connect(plan.server_name.clone(), tcp)
        .await
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    exchange(stream, plan).await
}

async fn exchange<S>(stream: S, plan: &HttpPlan) -> Result<(), ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // One plain write: the request is headers alone (by callgrind about 1%
    // fewer instructions per probe than hyper's vectored write).
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    // Filled in place from parts the plan checked: nothing here can fail.
    let mut request = http::Request::new(Empty::<Bytes>::new());
    *request.method_mut() = plan.method.clone();
    *request.uri_mut() = plan.uri.clone();
    let headers = request.headers_mut();
    headers.reserve(3 + plan.headers.len());
    headers.append(http::header::HOST, plan.host_header.clone());
    headers.append(http::header::USER_AGENT, USER_AGENT);
    headers.append(http::header::CONNECTION, CLOSE);
    for (name, value) in &plan.headers {
        headers.append(name.clone(), value.clone());
    }
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?;
        judge(response, plan).await
    };
    // The connection is driven here, not spawned: it ends with the probe.
    // It may finish first (the server closed after answering) while the
    // response still waits to be read: then the exchange is awaited alone.
    tokio::pin!(connection);
    tokio::pin!(exchange);
    tokio::select! {
        // In order: no random draw per probe.
        biased;
        result = &mut exchange => result,
        ended = &mut connection => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(ProbeError::Http(e.to_string())),
        },
    }
}

async fn judge(response: http::Response<Incoming>, plan: &HttpPlan) -> Result<(), ProbeError> {
    let status = response.status().as_u16();
    if !plan.status_codes.contains(&status) {
        return Err(ProbeError::Status(status));
    }
    let Some(expect) = &plan.expect else {
        return Ok(());
    };
    let mut body = response.into_body();
    let mut seen = Vec::new();
    while seen.len() < plan.max_body {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| ProbeError::Http(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            let room = plan.max_body - seen.len();
            seen.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    if expect.matches(&seen) {
        Ok(())
    } else {
        Err(ProbeError::Body {
            expected: expect.to_string(),
        })
    }
}

/// A probe's TCP stream under hyper (and TLS). hyper shuts the write side
/// down before it lets a connection go; when the connection is to end with
/// a reset (see [`super::tcp::connect`]) that shutdown does nothing, so
/// the drop sends the reset alone and no FIN goes first.
struct Closing<S> {
    stream: S,
    reset: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Closing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Closing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset {
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut self.stream).poll_shutdown(cx)
        }
    }
}
