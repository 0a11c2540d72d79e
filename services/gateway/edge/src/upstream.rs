//! One HTTP/2 connection per backend (calls are multiplexed on it, as gRPC channels do),
//! opened on first use and again whenever it has closed: a backend that went away and came
//! back is used again on the next call, and one that is down is reported at once.

use std::sync::Mutex;
use std::time::Duration;

use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpStream, UnixStream};

use crate::body::Counted;

pub type Sender = SendRequest<Counted>;

pub struct Upstream {
    pub name: String,
    pub address: String,
    /// The `:authority` sent to the backend.
    pub authority: String,
    sender: Mutex<Option<Sender>>,
    connecting: tokio::sync::Mutex<()>,
    connect_timeout: Duration,
}

impl Upstream {
    pub fn new(name: &str, address: &str, connect_timeout: Duration) -> Upstream {
        let authority = if address.starts_with("unix:") {
            "localhost"
        } else {
            address
        };
        Upstream {
            name: name.to_string(),
            address: address.to_string(),
            authority: authority.to_string(),
            sender: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            connect_timeout,
        }
    }

    fn current(&self) -> Option<Sender> {
        let guard = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    /// A sender on a live connection, connecting if there is none.
    pub async fn sender(&self) -> Result<Sender, String> {
        if let Some(sender) = self.current() {
            return Ok(sender);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(sender) = self.current() {
            return Ok(sender);
        }
        let sender = tokio::time::timeout(self.connect_timeout, self.connect())
            .await
            .map_err(|_| format!("no connection within {:?}", self.connect_timeout))??;
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<Sender, String> {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        // No keep-alive pings: grpc servers answer pings more often than every 5 minutes on
        // a connection without data with GOAWAY (too_many_pings), which would cut idle Watch
        // streams. A backend that goes away closes the connection, and the next call redials.
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(1 << 20)
            .initial_connection_window_size(1 << 22)
            // hyper's default (16 KiB) refuses a backend's answer with large trailers (an
            // error quoting a long field) as if the backend were down; read it and pass it on,
            // and the caller's gRPC library applies its own limit, as it would to the backend.
            .max_header_list_size(1 << 20);
        let fail = |e: std::io::Error| e.to_string();
        if let Some(path) = self.address.strip_prefix("unix:") {
            let stream = UnixStream::connect(path).await.map_err(fail)?;
            let (sender, connection) = builder
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            return Ok(sender);
        }
        let stream = TcpStream::connect(&self.address).await.map_err(fail)?;
        stream.set_nodelay(true).map_err(fail)?;
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(sender)
    }
}
