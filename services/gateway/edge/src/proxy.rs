//! Serving one call: a backend method is authorized and forwarded as it is (headers, the
//! `grpc-timeout` deadline, messages, trailers; a reset either way cancels the other side);
//! anything else (the gateway's own service, health, reflection) goes to the Python gateway.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;

use crate::auth::{bearer, Authorizer, Principal};
use crate::body::{status_of, Counted, Observed, OnEnd, RequestSeen};
use crate::config::{Config, MethodConfig, Role};
use crate::contract::LogLevel;
use crate::report::Reporter;
use crate::status::{code_name, EdgeError, CANCELLED, INTERNAL, UNAVAILABLE};
use crate::upstream::Upstream;
use crate::wire::{first_message, string_at};

/// Request headers that belong to this hop, or that only the edge may set.
const HOP_HEADERS: [&str; 3] = ["host", "x-forwarded-for", "x-hearth-principal"];
/// Every header under this prefix is the front door's to set: a caller's is dropped.
const INTERNAL_PREFIX: &str = "x-hearth-";

/// Whether calls of `method` change state (it needs the operator role): they are audited.
fn audited(method: &MethodConfig) -> bool {
    method.role == i32::from(Role::Operator)
}

/// Who is on the other end of a connection.
#[derive(Clone, Copy)]
pub enum Peer {
    /// The plaintext or the TLS port: the same rules and the same rate buckets.
    Tcp(SocketAddr),
    /// The gateway's HTTP face, on the private unix socket.
    Trusted,
}

struct Route {
    method: MethodConfig,
    upstream: Arc<Upstream>,
}

pub struct Proxy {
    routes: HashMap<String, Route>,
    fallback: Arc<Upstream>,
    authorizer: Authorizer,
    reporter: Reporter,
}

impl Proxy {
    pub fn new(config: Config, reporter: Reporter) -> Result<Proxy, String> {
        let timeout = std::time::Duration::from_secs_f64(config.connect_timeout_seconds.max(0.0));
        let upstreams: HashMap<String, Arc<Upstream>> = config
            .backends
            .iter()
            .map(|(name, address)| {
                (
                    name.clone(),
                    Arc::new(Upstream::new(name, address, timeout)),
                )
            })
            .collect();
        let authorizer = Authorizer::new(&config)?;
        let routes = config
            .methods
            .into_iter()
            .map(|(path, method)| {
                let upstream = upstreams[&method.backend].clone();
                (path, Route { method, upstream })
            })
            .collect();
        let fallback = Arc::new(Upstream::new("gateway", &config.fallback, timeout));
        Ok(Proxy {
            routes,
            fallback,
            authorizer,
            reporter,
        })
    }

    pub async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<Observed>, hyper::Error> {
        let client = match peer {
            Peer::Tcp(SocketAddr::V4(a)) => format!("ipv4:{}:{}", a.ip(), a.port()),
            // An IPv4 caller of a dual-stack listener: named as gRPC names it.
            Peer::Tcp(SocketAddr::V6(a)) => match a.ip().to_ipv4_mapped() {
                Some(v4) => format!("ipv4:{}:{}", v4, a.port()),
                None => format!("ipv6:[{}]:{}", a.ip(), a.port()),
            },
            // The HTTP face says who its caller is.
            Peer::Trusted => request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unix:")
                .to_string(),
        };
        match self.routes.get(request.uri().path()) {
            Some(route) => Ok(self.forward(route, request, client).await),
            None => Ok(self.pass_to_gateway(request, client).await),
        }
    }

    async fn pass_to_gateway(
        &self,
        request: Request<Incoming>,
        client: String,
    ) -> Response<Observed> {
        let seen = Arc::new(RequestSeen::default());
        let (mut parts, body) = request.into_parts();
        // The gateway checks its own callers' tokens, so `authorization` goes along.
        set_forwarding(&mut parts.headers, &client, None);
        let request = Request::from_parts(parts, Counted::new(body, seen, false));
        match send(&self.fallback, request).await {
            Ok(response) => {
                let code = status_of(response.headers());
                response.map(|body| Observed::new(body, code, None))
            }
            Err(SendError::Unreachable(details) | SendError::Unreadable(details)) => {
                EdgeError::new(
                    UNAVAILABLE,
                    format!("the gateway's own gRPC server is unavailable: {details}"),
                    "GATEWAY_UNAVAILABLE",
                )
                .response()
            }
        }
    }

    async fn forward(
        &self,
        route: &Route,
        request: Request<Incoming>,
        client: String,
    ) -> Response<Observed> {
        let started = Instant::now();
        let method = &route.method;
        let token = bearer(
            request
                .headers()
                .get("authorization")
                .map(HeaderValue::as_bytes),
        );
        let principal = match self.authorizer.authorize(method, token.as_deref(), started) {
            Ok(principal) => principal,
            Err(error) => {
                // Read the (small, unary) request before answering: a refusal sent while the
                // caller is still sending makes some HTTP/2 clients (curl/nghttp2) report a
                // stream error instead of the status.
                drain(request.into_body()).await;
                return self.refuse(method, &client, error, started);
            }
        };
        if method.server_streaming {
            self.reporter.stream_started(&method.full_name);
        }
        let report = Report {
            reporter: self.reporter.clone(),
            method_name: method.full_name.clone(),
            streaming: method.server_streaming,
            audited: audited(method),
            resource_fields: method
                .resource_fields
                .iter()
                .map(|path| path.numbers.clone())
                .collect(),
            principal: principal.clone(),
            client: client.clone(),
            started,
            seen: Arc::new(RequestSeen::default()),
            reported: false,
        };
        let (mut parts, body) = request.into_parts();
        parts.headers.remove("authorization");
        set_forwarding(&mut parts.headers, &client, Some(&principal));
        let request = Request::from_parts(
            parts,
            Counted::new(body, report.seen.clone(), audited(method)),
        );
        match send(&route.upstream, request).await {
            Ok(response) => {
                let code = status_of(response.headers());
                response.map(|body| Observed::new(body, code, Some(Box::new(report))))
            }
            Err(SendError::Unreachable(details)) => {
                let upstream = &route.upstream;
                let error = EdgeError::new(
                    UNAVAILABLE,
                    format!(
                        "backend {} ({}) is unavailable: {details}",
                        upstream.name, upstream.address
                    ),
                    "BACKEND_UNAVAILABLE",
                )
                .with("backend", upstream.name.clone())
                .with("address", upstream.address.clone());
                Box::new(report).ended(Some(UNAVAILABLE), 0);
                error.response()
            }
            Err(SendError::Unreadable(details)) => {
                // The backend is up (its connection lives) but this call's answer could not
                // be read: not UNAVAILABLE, which clients retry as "backend down".
                let upstream = &route.upstream;
                let error = EdgeError::new(
                    INTERNAL,
                    format!(
                        "backend {} ({}) answered, but its answer could not be read: {details}",
                        upstream.name, upstream.address
                    ),
                    "BACKEND_ANSWER_UNREADABLE",
                )
                .with("backend", upstream.name.clone());
                Box::new(report).ended(Some(INTERNAL), 0);
                error.response()
            }
        }
    }

    fn refuse(
        &self,
        method: &MethodConfig,
        client: &str,
        error: EdgeError,
        started: Instant,
    ) -> Response<Observed> {
        let code = code_name(error.code);
        if audited(method) {
            // A refused change is worth a line too.
            self.reporter.log(
                LogLevel::Warning,
                "hearth.audit",
                "audit refused",
                &[
                    ("method", method.full_name.clone()),
                    ("client", client.to_string()),
                    ("code", code.to_string()),
                    ("reason", error.reason.to_string()),
                ],
            );
        }
        if method.server_streaming {
            self.reporter.stream_started(&method.full_name);
        }
        let seconds = started.elapsed().as_secs_f64();
        self.reporter.call_ended(
            &method.full_name,
            method.server_streaming,
            error.code,
            seconds,
            0,
            0,
        );
        error.response()
    }
}

fn set_forwarding(headers: &mut http::HeaderMap, client: &str, principal: Option<&Principal>) {
    for name in HOP_HEADERS {
        headers.remove(name);
    }
    let internal: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(INTERNAL_PREFIX))
        .cloned()
        .collect();
    for name in internal {
        headers.remove(&name);
    }
    if let Ok(value) = HeaderValue::from_str(client) {
        headers.insert("x-forwarded-for", value);
    }
    if let Some(principal) = principal {
        if let Ok(value) = HeaderValue::from_str(&principal.name) {
            headers.insert("x-hearth-principal", value);
        }
    }
}

/// Reads and drops a refused call's request: at most 1 MiB, for at most a second.
async fn drain(body: Incoming) {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, 1 << 20);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), limited.collect()).await;
}

/// Why a call could not be sent on, or its answer not read.
enum SendError {
    /// No connection to the backend (it is down, or not listening).
    Unreachable(String),
    /// The connection lives, but this call's stream failed (e.g. an answer too large).
    Unreadable(String),
}

/// An error with its causes ("http2 error: stream error detected: ...").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn send(
    upstream: &Upstream,
    mut request: Request<Counted>,
) -> Result<Response<Incoming>, SendError> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *request.uri_mut() = Uri::builder()
        .scheme("http")
        .authority(upstream.authority.as_str())
        .path_and_query(path)
        .build()
        .map_err(|e| SendError::Unreachable(e.to_string()))?;
    let mut sender = upstream.sender().await.map_err(SendError::Unreachable)?;
    sender
        .ready()
        .await
        .map_err(|e| SendError::Unreachable(describe(&e)))?;
    match sender.send_request(request).await {
        Ok(response) => Ok(response),
        Err(error) if sender.is_closed() => Err(SendError::Unreachable(describe(&error))),
        Err(error) => Err(SendError::Unreadable(describe(&error))),
    }
}

/// Reported when a forwarded call ends: metrics, and the audit line for a change.
struct Report {
    reporter: Reporter,
    method_name: String,
    streaming: bool,
    audited: bool,
    resource_fields: Vec<Vec<u32>>,
    principal: Principal,
    client: String,
    started: Instant,
    seen: Arc<RequestSeen>,
    reported: bool,
}

impl OnEnd for Report {
    fn ended(mut self: Box<Self>, code: Option<u32>, sent: u64) {
        self.report(code, sent);
    }
}

impl Drop for Report {
    /// The caller went away before the backend answered: the call was cancelled.
    fn drop(&mut self) {
        self.report(None, 0);
    }
}

impl Report {
    fn report(&mut self, code: Option<u32>, sent: u64) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let code = code.unwrap_or(CANCELLED);
        let seconds = self.started.elapsed().as_secs_f64();
        let received = self
            .seen
            .messages
            .load(std::sync::atomic::Ordering::Relaxed);
        self.reporter.call_ended(
            &self.method_name,
            self.streaming,
            code,
            seconds,
            received,
            sent,
        );
        if !self.audited {
            return;
        }
        let resource = {
            let kept = self.seen.kept.lock().unwrap_or_else(|e| e.into_inner());
            first_message(&kept)
                .map(|message| {
                    self.resource_fields
                        .iter()
                        .filter_map(|path| string_at(message, path))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        self.reporter.log(
            LogLevel::Info,
            "hearth.audit",
            "audit",
            &[
                ("who", self.principal.name.clone()),
                ("role", self.principal.role.to_string()),
                ("method", self.method_name.clone()),
                ("resource", resource),
                ("client", self.client.clone()),
                ("code", code_name(code).to_string()),
                ("seconds", format!("{seconds:.3}")),
            ],
        );
    }
}
