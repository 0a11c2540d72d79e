//! What the edge tells the Python gateway, one JSON object per line on stdout: its port,
//! every call it served (for the `grpc_server_*` metrics the gateway exports) and log lines
//! (audit lines among them), which the gateway writes in hearth's one log format.

use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Duration, Instant};

/// How long call records may wait to be written: the gateway reads them in batches instead
/// of waking for every call while calls are in flight (log lines go at once).
const BATCH: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Reporter {
    lines: mpsc::UnboundedSender<(Value, bool)>,
}

impl Reporter {
    /// The reporter and the task that writes its lines.
    pub fn new() -> (Reporter, impl std::future::Future<Output = ()>) {
        let (lines, mut queue) = mpsc::unbounded_channel::<(Value, bool)>();
        let writer = async move {
            let mut out = BufWriter::new(tokio::io::stdout());
            while let Some((first, mut urgent)) = queue.recv().await {
                let deadline = Instant::now() + BATCH;
                let mut next = Some(first);
                while let Some(value) = next.take() {
                    let mut line = value.to_string();
                    line.push('\n');
                    if out.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                    next = match queue.try_recv() {
                        Ok((value, now)) => {
                            urgent |= now;
                            Some(value)
                        }
                        Err(_) if urgent => None,
                        Err(_) => match timeout_at(deadline, queue.recv()).await {
                            Ok(Some((value, now))) => {
                                urgent |= now;
                                Some(value)
                            }
                            Ok(None) | Err(_) => None,
                        },
                    };
                }
                if out.flush().await.is_err() {
                    return;
                }
            }
        };
        (Reporter { lines }, writer)
    }

    fn send(&self, value: Value, urgent: bool) {
        let _ = self.lines.send((value, urgent));
    }

    pub fn listening(&self, port: u16) {
        self.send(json!({"t": "listening", "port": port}), true);
    }

    pub fn stream_started(&self, method: &str) {
        self.send(
            json!({"t": "start", "m": method, "k": "server_stream"}),
            false,
        );
    }

    pub fn call_ended(
        &self,
        method: &str,
        streaming: bool,
        code: &str,
        seconds: f64,
        rx: u64,
        tx: u64,
    ) {
        let kind = if streaming { "server_stream" } else { "unary" };
        self.send(json!({"t": "end", "m": method, "k": kind, "c": code, "s": seconds, "rx": rx, "tx": tx}), false);
    }

    pub fn log(&self, level: &str, logger: &str, message: &str, pairs: &[(&str, String)]) {
        let kv: Vec<Value> = pairs.iter().map(|(k, v)| json!([k, v])).collect();
        self.send(
            json!({"t": "log", "level": level, "logger": logger, "msg": message, "kv": kv}),
            true,
        );
    }
}
