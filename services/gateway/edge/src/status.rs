//! gRPC statuses the edge answers itself: trailers-only responses with `grpc-status`,
//! a percent-encoded `grpc-message` and a `google.rpc.Status` (with an `ErrorInfo`) in
//! `grpc-status-details-bin`, the same rich status the Python services send.

use http::{HeaderMap, HeaderValue, Response};

pub const CANCELLED: u32 = 1;
pub const UNKNOWN: u32 = 2;
pub const INTERNAL: u32 = 13;
pub const PERMISSION_DENIED: u32 = 7;
pub const RESOURCE_EXHAUSTED: u32 = 8;
pub const UNAVAILABLE: u32 = 14;
pub const UNAUTHENTICATED: u32 = 16;

pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// An error the edge answers without asking a backend.
#[derive(Debug, Clone)]
pub struct EdgeError {
    pub code: u32,
    pub message: String,
    pub reason: &'static str,
    pub metadata: Vec<(&'static str, String)>,
}

impl EdgeError {
    pub fn new(code: u32, message: String, reason: &'static str) -> Self {
        EdgeError {
            code,
            message,
            reason,
            metadata: Vec::new(),
        }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.metadata.push((key, value.into()));
        self
    }

    /// `google.rpc.Status{code, message, details: [Any(ErrorInfo)]}` in protobuf wire format.
    pub fn status_proto(&self) -> Vec<u8> {
        let mut info = Vec::new();
        put_bytes(&mut info, 1, self.reason.as_bytes());
        put_bytes(&mut info, 2, b"gateway.hearth");
        for (key, value) in &self.metadata {
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, key.as_bytes());
            put_bytes(&mut entry, 2, value.as_bytes());
            put_bytes(&mut info, 3, &entry);
        }
        let mut any = Vec::new();
        put_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.ErrorInfo");
        put_bytes(&mut any, 2, &info);
        let mut status = Vec::new();
        put_key(&mut status, 1, 0);
        put_varint(&mut status, u64::from(self.code));
        put_bytes(&mut status, 2, self.message.as_bytes());
        put_bytes(&mut status, 3, &any);
        status
    }

    /// A trailers-only gRPC response carrying this status.
    pub fn response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        put_status(headers, self.code, &self.message);
        if let Ok(value) = HeaderValue::from_str(&base64(&self.status_proto())) {
            headers.insert("grpc-status-details-bin", value);
        }
        response
    }
}

pub fn put_status(headers: &mut HeaderMap, code: u32, message: &str) {
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    put_varint(out, u64::from(field << 3 | wire_type));
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// grpc-message encoding: printable ASCII except '%' as is, everything else as %XX.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Standard base64 without padding, as gRPC emits for `-bin` metadata.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_unpadded() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg");
        assert_eq!(base64(b"fo"), "Zm8");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("no token: 100%"), "no token: 100%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    #[test]
    fn status_proto_has_code_message_and_error_info() {
        let error = EdgeError::new(UNAUTHENTICATED, "hi".into(), "R").with("k", "v");
        let bytes = error.status_proto();
        assert_eq!(&bytes[..2], &[0x08, 16]);
        assert_eq!(&bytes[2..6], &[0x12, 2, b'h', b'i']);
        assert_eq!(bytes[6], 0x1a);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("type.googleapis.com/google.rpc.ErrorInfo"));
        assert!(text.contains("gateway.hearth"));
    }
}
