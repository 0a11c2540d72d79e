//! The edge's configuration: a JSON file written by the Python gateway, which owns and
//! validates the user's settings (YAML / HEARTH_GATEWAY_*), so nothing here is user-facing.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Config {
    /// Public gRPC address, e.g. "[::]:50051" or "127.0.0.1:0".
    pub listen: String,
    /// A unix socket for the gateway's HTTP face ("unix:/path"), where the caller's
    /// `x-forwarded-for` is trusted (anyone else's is replaced). Optional.
    #[serde(default)]
    pub private_listen: Option<String>,
    /// The Python gateway's own gRPC server (gateway service, health, reflection).
    pub fallback: String,
    /// Backend name -> address ("host:port" or "unix:/path").
    pub backends: HashMap<String, String>,
    /// Request path ("/pkg.Service/Method") -> what the edge needs to serve it.
    pub methods: HashMap<String, MethodConfig>,
    pub tokens: Vec<TokenConfig>,
    pub anonymous_read: bool,
    /// Seconds that in-flight calls get to finish after SIGTERM.
    pub shutdown_grace_seconds: f64,
    /// Seconds to wait for a backend connection before answering UNAVAILABLE.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: f64,
}

fn default_connect_timeout() -> f64 {
    2.0
}

#[derive(Debug, Deserialize)]
pub struct MethodConfig {
    pub backend: String,
    /// "hearth.wake.v1.WakeService/WakeHost": the name used in logs, rate limits and metrics.
    pub full_name: String,
    pub mutating: bool,
    pub server_streaming: bool,
    /// Calls allowed per `rate_per_seconds`, per caller (absent: no limit).
    pub rate_calls: Option<u32>,
    pub rate_per_seconds: Option<f64>,
    /// Field-number paths of the request fields naming the resource (for the audit line).
    #[serde(default)]
    pub resource_fields: Vec<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
pub struct TokenConfig {
    pub name: String,
    pub role: String,
    /// Hex SHA-256 of the bearer token.
    pub sha256: String,
}

impl Config {
    pub fn load(path: &str) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let config: Config =
            serde_json::from_str(&text).map_err(|e| format!("bad config {path}: {e}"))?;
        for (path, method) in &config.methods {
            if !config.backends.contains_key(&method.backend) {
                return Err(format!("{path}: unknown backend {}", method.backend));
            }
        }
        Ok(config)
    }
}
