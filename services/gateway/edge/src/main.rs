//! hearth-edge: the gateway's gRPC front door.
//!
//! Started by `hearth-gateway` with `--config <file>` (an `EdgeConfig`, see `config`); it
//! listens on the public gRPC address and, with TLS configured, on the gRPC-with-TLS one
//! (one door for both: the same rules, the same rate buckets), authorizes and forwards every
//! wake, audio and ci call to its backend over HTTP/2 without decoding it, and passes
//! everything else to the Python gateway. Another process hop in grpc-python costs about as
//! much as the call itself; this one costs a fraction of it.
//!
//! It reports on stdout (see `report`) and exits when stdin closes, so it never outlives
//! the gateway that started it.

mod auth;
mod body;
mod config;
mod contract;
mod proxy;
mod report;
mod status;
mod upstream;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::contract::EdgeTls;
use crate::proxy::{Peer, Proxy};
use crate::report::Reporter;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config_path = match args.as_slice() {
        [_, flag, path] if flag == "--config" => path.clone(),
        _ => {
            eprintln!("usage: hearth-edge --config <edge-config.pb>");
            std::process::exit(2);
        }
    };
    let config = config::load(&config_path).unwrap_or_else(|error| {
        eprintln!("hearth-edge: {error}");
        std::process::exit(2);
    });
    // One thread: forwarding a call is little work next to what the Python services behind
    // it do, and a home server's few cores are better left to them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(config));
    std::process::exit(code);
}

async fn run(config: Config) -> i32 {
    let (reporter, writer) = Reporter::new();
    let writer = tokio::spawn(writer);
    let listener = match bind(&config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("hearth-edge: cannot listen on {}: {error}", config.listen);
            return 2;
        }
    };
    let tls = match &config.tls {
        Some(tls) => match tls_acceptor(tls) {
            Ok(acceptor) => match bind(&tls.listen).await {
                Ok(listener) => Some((listener, acceptor)),
                Err(error) => {
                    eprintln!("hearth-edge: cannot listen on {}: {error}", tls.listen);
                    return 2;
                }
            },
            Err(error) => {
                eprintln!("hearth-edge: {error}");
                return 2;
            }
        },
        None => None,
    };
    let private_listen = Some(config.private_listen.as_str()).filter(|s| !s.is_empty());
    let private = match private_listen.map(bind_unix).transpose() {
        Ok(private) => private,
        Err(error) => {
            eprintln!(
                "hearth-edge: cannot listen on {:?}: {error}",
                config.private_listen
            );
            return 2;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let tls_port = tls
        .as_ref()
        .and_then(|(listener, _)| listener.local_addr().ok())
        .map_or(0, |a| a.port());
    let grace = Duration::from_secs_f64(config.shutdown_grace_seconds.max(0.0));
    let proxy = match Proxy::new(config, reporter.clone()) {
        Ok(proxy) => Arc::new(proxy),
        Err(error) => {
            eprintln!("hearth-edge: {error}");
            return 2;
        }
    };
    reporter.listening(port, tls_port);

    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // Hundreds of Watch streams share one client connection (a gRPC channel).
        .max_concurrent_streams(100_000)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 22)
        .keep_alive_interval(Duration::from_secs(60))
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let parent_gone = async {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
    };
    tokio::pin!(parent_gone);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service =
                    service_fn(move |request| proxy.clone().serve(request, Peer::Tcp(peer)));
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(connection);
            }
            Some((accepted, acceptor)) = accept_tls(tls.as_ref()) => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // The handshake is the connection's own task: a slow client holds no one up.
                    let handshake = tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream));
                    let Ok(Ok(stream)) = handshake.await else { return };
                    let service =
                        service_fn(move |request| proxy.clone().serve(request, Peer::Tcp(peer)));
                    let _ = watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await;
                });
            }
            Some(accepted) = accept_unix(private.as_ref()) => {
                let Ok((stream, _)) = accepted else { continue };
                let proxy = proxy.clone();
                let service = service_fn(move |request| proxy.clone().serve(request, Peer::Trusted));
                let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(connection);
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = &mut parent_gone => break,
        }
    }
    drop(listener);
    drop(tls);
    drop(private);
    // In-flight calls (Watch streams among them) get the grace period, then are cut.
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    drop(reporter);
    drop(proxy);
    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    0
}

/// How long a TLS client has to finish its handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The TLS port's acceptor (HTTP/2 only, as gRPC needs: ALPN "h2").
fn tls_acceptor(tls: &EdgeTls) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS: cannot read certificates from {}: {e}", tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("TLS: cannot read the key from {}: {e}", tls.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("TLS: {e}"))?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

async fn accept_tls(
    tls: Option<&(TcpListener, TlsAcceptor)>,
) -> Option<(
    std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    TlsAcceptor,
)> {
    match tls {
        Some((listener, acceptor)) => Some((listener.accept().await, acceptor.clone())),
        None => std::future::pending().await,
    }
}

fn bind_unix(address: &str) -> std::io::Result<UnixListener> {
    let path = address.strip_prefix("unix:").unwrap_or(address);
    let _ = std::fs::remove_file(path); // a socket left by an edge that was killed
    UnixListener::bind(path)
}

async fn accept_unix(
    listener: Option<&UnixListener>,
) -> Option<std::io::Result<(UnixStream, tokio::net::unix::SocketAddr)>> {
    match listener {
        Some(listener) => Some(listener.accept().await),
        None => std::future::pending().await,
    }
}

async fn bind(address: &str) -> std::io::Result<TcpListener> {
    // "[::]:50051" listens on both IPv6 and IPv4 (Linux's default for a v6 wildcard).
    let addrs = tokio::net::lookup_host(address).await?;
    let mut last = std::io::Error::other("no address");
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last = error,
        }
    }
    Err(last)
}
