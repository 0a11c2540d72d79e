//! Bearer tokens, roles and per-caller rate limits: the same checks as the Python gateway's
//! `hearth_gateway.auth`, with the same codes, reasons and messages. What each method needs
//! is not decided here: its role and rate come in the EdgeConfig, derived by the gateway
//! from the method's `hearth.auth.v1.policy` option (tests/test_gateway_auth_table.py holds
//! both doors to the same answer for every method and role).
//!
//! A missing token is anonymous (fine for reading with `anonymous_read`), a wrong one is
//! UNAUTHENTICATED, a known one without the role PERMISSION_DENIED. Tokens are compared as
//! SHA-256 digests in constant time against every configured token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::config::{method_role, Config, MethodConfig, Role};
use crate::status::{EdgeError, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: &'static str,
}

/// A role as messages, logs and ErrorInfo metadata spell it (as Python's).
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Viewer => "viewer",
        Role::Anonymous | Role::Unspecified => "anonymous",
    }
}

fn rank(role: &str) -> u8 {
    match role {
        "operator" => 2,
        "viewer" => 1,
        _ => 0,
    }
}

struct Token {
    name: String,
    role: &'static str,
    digest: [u8; 32],
}

struct Bucket {
    tokens: f64,
    stamp: Instant,
}

pub struct Authorizer {
    tokens: Vec<Token>,
    anonymous_read: bool,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

/// The longest token accepted (longer ones are malformed): as `MAX_TOKEN_CHARS` in Python.
pub const MAX_TOKEN_CHARS: usize = 1024;

fn token68(token: &str) -> bool {
    // RFC 6750's b64token: letters, digits, - . _ ~ + /, then any number of "=".
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// The token of an `authorization: Bearer <token>` value, by the grammar of Python's
/// `hearth_gateway.auth.bearer` (both pinned by tests/test_gateway_auth_table.py): None when
/// absent or blank (anonymous), "" when malformed (wrong scheme, no token, a space inside
/// it, non-ASCII, longer than `MAX_TOKEN_CHARS`), else the token.
pub fn bearer(value: Option<&[u8]>) -> Option<String> {
    let value = value?;
    let Ok(value) = std::str::from_utf8(value) else {
        return Some(String::new());
    };
    if !value.is_ascii() {
        return Some(String::new());
    }
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() {
        return None;
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.len() > MAX_TOKEN_CHARS || !token68(token) {
        return Some(String::new());
    }
    Some(token.to_string())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authorizer {
    pub fn new(config: &Config) -> Result<Authorizer, String> {
        let mut tokens = Vec::new();
        for token in &config.tokens {
            let digest: [u8; 32] = token
                .sha256
                .as_slice()
                .try_into()
                .map_err(|_| format!("token {}: sha256 is not 32 bytes", token.name))?;
            let role = method_role(token.role)
                .map(role_name)
                .ok_or_else(|| format!("token {}: no role", token.name))?;
            tokens.push(Token {
                name: token.name.clone(),
                role,
                digest,
            });
        }
        Ok(Authorizer {
            tokens,
            anonymous_read: config.anonymous_read,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Who holds `token`: anonymous for none, UNAUTHENTICATED for a wrong one.
    pub fn identify(&self, token: Option<&str>) -> Result<Principal, EdgeError> {
        let Some(token) = token else {
            return Ok(Principal {
                name: "anonymous".into(),
                role: "anonymous",
            });
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Token> = None;
        for known in &self.tokens {
            // Every token is compared, so timing says nothing about which one nearly matched.
            if constant_time_eq(&digest, &known.digest) && found.is_none() {
                found = Some(known);
            }
        }
        match found {
            Some(known) => Ok(Principal {
                name: known.name.clone(),
                role: known.role,
            }),
            None => Err(EdgeError::new(
                UNAUTHENTICATED,
                "invalid bearer token".into(),
                "INVALID_TOKEN",
            )),
        }
    }

    pub fn authorize(
        &self,
        method: &MethodConfig,
        token: Option<&str>,
        now: Instant,
    ) -> Result<Principal, EdgeError> {
        let principal = self.identify(token)?;
        // Checked when the config was loaded; operator is the safe side all the same.
        let need = role_name(method_role(method.role).unwrap_or(Role::Operator));
        if principal.role == "anonymous" {
            if need == "viewer" && self.anonymous_read {
                return Ok(principal);
            }
            return Err(EdgeError::new(
                UNAUTHENTICATED,
                format!("{} needs a bearer token with role {need}", method.full_name),
                "TOKEN_REQUIRED",
            )
            .with("required_role", need));
        }
        if rank(principal.role) < rank(need) {
            return Err(EdgeError::new(
                PERMISSION_DENIED,
                format!(
                    "{} ({}) may not call {}: needs role {need}",
                    principal.name, principal.role, method.full_name
                ),
                "ROLE_REQUIRED",
            )
            .with("required_role", need)
            .with("role", principal.role));
        }
        self.limit(method, &principal, now)?;
        Ok(principal)
    }

    fn limit(&self, method: &MethodConfig, who: &Principal, now: Instant) -> Result<(), EdgeError> {
        let Some(rate) = &method.rate else {
            return Ok(());
        };
        let (calls, per) = (rate.calls, rate.per_seconds);
        let name = method
            .full_name
            .rsplit('/')
            .next()
            .unwrap_or(&method.full_name);
        if calls == 0 {
            return Err(EdgeError::new(
                RESOURCE_EXHAUSTED,
                format!(
                    "{name} is switched off: its rate limit is 0 per {} s",
                    trim_float(per)
                ),
                "RATE_LIMITED",
            ));
        }
        let capacity = f64::from(calls);
        let rate = capacity / per;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry((method.full_name.clone(), who.name.clone()))
            .or_insert(Bucket {
                tokens: capacity,
                stamp: now,
            });
        let elapsed = now.saturating_duration_since(bucket.stamp).as_secs_f64();
        bucket.tokens = capacity.min(bucket.tokens + elapsed * rate);
        bucket.stamp = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate;
        Err(EdgeError::new(
            RESOURCE_EXHAUSTED,
            format!(
                "too many {name} calls by {}: limit {calls} per {} s, retry in {wait:.1} s",
                who.name,
                trim_float(per)
            ),
            "RATE_LIMITED",
        )
        .with("retry_after_seconds", format!("{wait:.1}")))
    }
}

/// Python's `{x:g}` for the small round numbers rates use ("60", "0.5").
fn trim_float(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{EdgeToken, Rate};
    use std::time::Duration;

    fn sha(token: &str) -> Vec<u8> {
        Sha256::digest(token.as_bytes()).to_vec()
    }

    fn config(anonymous_read: bool) -> Config {
        Config {
            tokens: vec![
                EdgeToken {
                    name: "ann".into(),
                    role: Role::Viewer.into(),
                    sha256: sha("v-token"),
                },
                EdgeToken {
                    name: "bob".into(),
                    role: Role::Operator.into(),
                    sha256: sha("o-token"),
                },
            ],
            anonymous_read,
            ..Config::default()
        }
    }

    fn method(mutating: bool, rate: Option<(u32, f64)>) -> MethodConfig {
        let role = if mutating {
            Role::Operator
        } else {
            Role::Viewer
        };
        MethodConfig {
            backend: "wake".into(),
            full_name: "hearth.wake.v1.WakeService/WakeHost".into(),
            role: role.into(),
            rate: rate.map(|(calls, per_seconds)| Rate { calls, per_seconds }),
            ..MethodConfig::default()
        }
    }

    #[test]
    fn bearer_parses_the_header() {
        let b = |v: &str| bearer(Some(v.as_bytes()));
        assert_eq!(bearer(None), None);
        assert_eq!(b(" \t"), None);
        assert_eq!(b("Bearer abc "), Some("abc".into()));
        assert_eq!(b("bearer  abc"), Some("abc".into()));
        assert_eq!(b("Basic abc"), Some(String::new()));
        assert_eq!(b("Bearer"), Some(String::new()));
        assert_eq!(b("Bearer\tabc"), Some(String::new()));
        assert_eq!(b("Bearer a b"), Some(String::new()));
        assert_eq!(b("Bearer ab=="), Some("ab==".into()));
        assert_eq!(b("Bearer =="), Some(String::new()));
        assert_eq!(bearer(Some(b"Bearer \xc3\xa9")), Some(String::new()));
        assert_eq!(
            b(&format!("Bearer {}", "a".repeat(1025))),
            Some(String::new())
        );
    }

    #[test]
    fn roles_and_codes() {
        let auth = Authorizer::new(&config(false)).unwrap();
        let now = Instant::now();
        let read = method(false, None);
        let write = method(true, None);
        assert_eq!(
            auth.authorize(&read, None, now).unwrap_err().code,
            UNAUTHENTICATED
        );
        assert_eq!(
            auth.authorize(&read, Some("nope"), now).unwrap_err().reason,
            "INVALID_TOKEN"
        );
        assert_eq!(
            auth.authorize(&read, Some("v-token"), now).unwrap().name,
            "ann"
        );
        let denied = auth.authorize(&write, Some("v-token"), now).unwrap_err();
        assert_eq!(denied.code, PERMISSION_DENIED);
        assert_eq!(
            denied.message,
            "ann (viewer) may not call hearth.wake.v1.WakeService/WakeHost: needs role operator"
        );
        assert_eq!(
            auth.authorize(&write, Some("o-token"), now).unwrap().role,
            "operator"
        );
        let anonymous = Authorizer::new(&config(true)).unwrap();
        assert_eq!(
            anonymous.authorize(&read, None, now).unwrap().role,
            "anonymous"
        );
        assert_eq!(
            anonymous.authorize(&write, None, now).unwrap_err().reason,
            "TOKEN_REQUIRED"
        );
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let auth = Authorizer::new(&config(false)).unwrap();
        let limited = method(true, Some((2, 60.0)));
        let now = Instant::now();
        assert!(auth.authorize(&limited, Some("o-token"), now).is_ok());
        assert!(auth.authorize(&limited, Some("o-token"), now).is_ok());
        let refused = auth.authorize(&limited, Some("o-token"), now).unwrap_err();
        assert_eq!(refused.code, RESOURCE_EXHAUSTED);
        assert_eq!(
            refused.message,
            "too many WakeHost calls by bob: limit 2 per 60 s, retry in 30.0 s"
        );
        assert!(auth
            .authorize(&limited, Some("o-token"), now + Duration::from_secs(31))
            .is_ok());
        let closed = method(true, Some((0, 60.0)));
        let refused = auth.authorize(&closed, Some("o-token"), now).unwrap_err();
        assert_eq!(refused.code, RESOURCE_EXHAUSTED);
        assert_eq!(
            refused.message,
            "WakeHost is switched off: its rate limit is 0 per 60 s"
        );
    }
}
