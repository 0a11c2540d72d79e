//! What the edge tells the Python gateway: `EdgeReport` messages on stdout, each
//! length-delimited (the internal contract, protos/hearth/gateway/internal/v1/edge.proto):
//! its ports, every call it served (for the `grpc_server_*` metrics the gateway exports)
//! and log lines (audit lines among them), which the gateway writes in hearth's one format.

use prost::Message;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Duration, Instant};

use crate::contract::{
    edge_report, CallEnded, CallStarted, EdgeReport, Listening, LogField, LogLevel, LogLine,
};

/// How long call records may wait to be written: the gateway reads them in batches instead
/// of waking for every call while calls are in flight (log lines go at once).
const BATCH: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub struct Reporter {
    reports: mpsc::UnboundedSender<(EdgeReport, bool)>,
}

impl Reporter {
    /// The reporter and the task that writes its reports.
    pub fn new() -> (Reporter, impl std::future::Future<Output = ()>) {
        let (reports, mut queue) = mpsc::unbounded_channel::<(EdgeReport, bool)>();
        let writer = async move {
            let mut out = BufWriter::new(tokio::io::stdout());
            while let Some((first, mut urgent)) = queue.recv().await {
                let deadline = Instant::now() + BATCH;
                let mut next = Some(first);
                while let Some(report) = next.take() {
                    if out
                        .write_all(&report.encode_length_delimited_to_vec())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    next = match queue.try_recv() {
                        Ok((report, now)) => {
                            urgent |= now;
                            Some(report)
                        }
                        Err(_) if urgent => None,
                        Err(_) => match timeout_at(deadline, queue.recv()).await {
                            Ok(Some((report, now))) => {
                                urgent |= now;
                                Some(report)
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
        (Reporter { reports }, writer)
    }

    fn send(&self, report: edge_report::Report, urgent: bool) {
        let report = EdgeReport {
            report: Some(report),
        };
        let _ = self.reports.send((report, urgent));
    }

    pub fn listening(&self, port: u16, tls_port: u16) {
        let listening = Listening {
            port: u32::from(port),
            tls_port: u32::from(tls_port),
        };
        self.send(edge_report::Report::Listening(listening), true);
    }

    pub fn stream_started(&self, method: &str) {
        let started = CallStarted {
            method: method.to_string(),
        };
        self.send(edge_report::Report::Started(started), false);
    }

    pub fn call_ended(
        &self,
        method: &str,
        server_streaming: bool,
        code: u32,
        seconds: f64,
        received: u64,
        sent: u64,
    ) {
        let ended = CallEnded {
            method: method.to_string(),
            server_streaming,
            code,
            seconds,
            messages_received: received,
            messages_sent: sent,
        };
        self.send(edge_report::Report::Ended(ended), false);
    }

    pub fn log(&self, level: LogLevel, logger: &str, message: &str, pairs: &[(&str, String)]) {
        let line = LogLine {
            level: level.into(),
            logger: logger.to_string(),
            message: message.to_string(),
            fields: pairs
                .iter()
                .map(|(key, value)| LogField {
                    key: key.to_string(),
                    value: value.clone(),
                })
                .collect(),
        };
        self.send(edge_report::Report::Log(line), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_length_delimited_protobuf() {
        let report = EdgeReport {
            report: Some(edge_report::Report::Listening(Listening {
                port: 50051,
                tls_port: 0,
            })),
        };
        let bytes = report.encode_length_delimited_to_vec();
        assert_eq!(usize::from(bytes[0]), bytes.len() - 1);
        let back = EdgeReport::decode_length_delimited(bytes.as_slice()).unwrap();
        assert_eq!(back, report);
    }
}
