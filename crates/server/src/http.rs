//! The HTTP accept loop: axum's router on hyper, with what `axum::serve`
//! leaves out. A client must send its request headers within
//! [`HEADER_TIMEOUT`] (a slowloris holding connections open with a few bytes
//! at a time is cut off), and a connection is dropped after
//! [`MAX_CONNECTIONS`]. On shutdown it stops accepting, lets every connection
//! finish its request (graceful), and returns once they have, or after
//! [`DRAIN`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// A client has this long to send its request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for requests under way.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` (over TLS when `tls` is set) until
/// `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // a message to every connection to finish gracefully; their receivers
    // dropping tells shutdown when all are done
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => p.expect("never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait, do not spin
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, peer, router, &builder, stop).await,
                // the handshake has the headers' time limit: a client that
                // stalls in it holds a connection as a slowloris would
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, peer, router, &builder, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // every connection task holds a receiver until it is done
    let _ = tokio::time::timeout(DRAIN, stop_tx.closed()).await;
    Ok(())
}

/// Serves one connection until it ends, or finishes its request under way
/// when `stop` says so.
async fn connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    builder: &Builder<TokioExecutor>,
    mut stop: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req.map(Body::new))
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(%peer, error = %e, "connection ended");
            }
            return;
        }
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
    drop(stop);
}

/// The TLS acceptor of a certificate chain and its private key (PEM files;
/// the key PKCS#8, PKCS#1 or SEC1). HTTP/2 and HTTP/1.1 are offered.
pub(crate) fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
    alpn: &[&[u8]],
) -> crate::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    let bad = |what: &std::path::Path, why: String| {
        crate::error::ServerError::Invalid(format!("TLS: {}: {why}", what.display()))
    };
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| bad(p, e.to_string()));
    let cert_pem = read(cert)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(key, format!("not a PEM private key: {e}")))?
        .ok_or_else(|| bad(key, "no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(cert, format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
