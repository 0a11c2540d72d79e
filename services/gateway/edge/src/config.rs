//! The edge's configuration: an `EdgeConfig` (binary protobuf, the internal contract in
//! protos/hearth/gateway/internal/v1/edge.proto) written by the Python gateway, which owns
//! and validates the user's settings and derives each method's rules from the descriptors,
//! so nothing here is user-facing and no rule is derived here.

use prost::Message;

pub use crate::contract::{EdgeConfig as Config, EdgeMethod as MethodConfig, Role};

/// Seconds to wait for a backend connection when the config does not say.
const DEFAULT_CONNECT_TIMEOUT: f64 = 2.0;

/// The roles a method may require (a caller without a token is `Role::Anonymous`).
pub fn method_role(role: i32) -> Option<Role> {
    match Role::try_from(role) {
        Ok(role @ (Role::Viewer | Role::Operator)) => Some(role),
        _ => None,
    }
}

pub fn load(path: &str) -> Result<Config, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut config =
        Config::decode(bytes.as_slice()).map_err(|e| format!("bad config {path}: {e}"))?;
    for (path, method) in &config.methods {
        if !config.backends.contains_key(&method.backend) {
            return Err(format!("{path}: unknown backend {}", method.backend));
        }
        if method_role(method.role).is_none() {
            return Err(format!("{path}: no policy role"));
        }
    }
    if config.connect_timeout_seconds <= 0.0 {
        config.connect_timeout_seconds = DEFAULT_CONNECT_TIMEOUT;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::EdgeMethod;

    fn written(config: &Config, name: &str) -> String {
        let path =
            std::env::temp_dir().join(format!("hearth-edge-{}-{name}.pb", std::process::id()));
        std::fs::write(&path, config.encode_to_vec()).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn with_method(role: Role) -> Config {
        let mut config = Config {
            backends: [("wake".to_string(), "localhost:1".to_string())].into(),
            ..Config::default()
        };
        let method = EdgeMethod {
            backend: "wake".into(),
            full_name: "hearth.wake.v1.WakeService/WakeHost".into(),
            role: role.into(),
            ..EdgeMethod::default()
        };
        config
            .methods
            .insert("/hearth.wake.v1.WakeService/WakeHost".into(), method);
        config
    }

    #[test]
    fn a_method_needs_a_policy_role() {
        let loaded = load(&written(&with_method(Role::Operator), "ok")).unwrap();
        assert_eq!(loaded.connect_timeout_seconds, DEFAULT_CONNECT_TIMEOUT);
        for role in [Role::Unspecified, Role::Anonymous] {
            let error = load(&written(&with_method(role), "no-role")).unwrap_err();
            assert!(error.ends_with("no policy role"), "{error}");
        }
    }
}
