//! Just enough of the wire formats to observe calls without decoding them: gRPC's
//! length-prefixed message framing (to count messages) and protobuf fields by number (to
//! name the resource of a call that changes state, for the audit line).

/// Counts gRPC messages in a byte stream split arbitrarily across DATA frames.
#[derive(Debug, Default)]
pub struct FrameCounter {
    pub messages: u64,
    header: [u8; 5],
    header_len: usize,
    remaining: u64,
}

impl FrameCounter {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len() as u64);
                self.remaining -= take;
                bytes = &bytes[take as usize..];
                continue;
            }
            let take = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&bytes[..take]);
            self.header_len += take;
            bytes = &bytes[take..];
            if self.header_len == 5 {
                self.messages += 1;
                self.header_len = 0;
                self.remaining = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
            }
        }
    }
}

/// The message inside one uncompressed gRPC frame (None if compressed or cut short).
pub fn first_message(framed: &[u8]) -> Option<&[u8]> {
    if framed.len() < 5 || framed[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
    framed.get(5..5 + len)
}

fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// The last occurrence of length-delimited field `number` in `message` (proto3 semantics).
fn field(message: &[u8], number: u32) -> Option<&[u8]> {
    let mut pos = 0;
    let mut found = None;
    while pos < message.len() {
        let key = varint(message, &mut pos)?;
        let (num, wire_type) = ((key >> 3) as u32, key & 7);
        match wire_type {
            0 => {
                varint(message, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(message, &mut pos)? as usize;
                let value = message.get(pos..pos.checked_add(len)?)?;
                if num == number {
                    found = Some(value);
                }
                pos += len;
            }
            _ => return None,
        }
    }
    found
}

/// The string at a field-number path (`[1, 1]` is `host.name`), if present and UTF-8.
pub fn string_at(message: &[u8], path: &[u32]) -> Option<String> {
    let mut current = message;
    for number in path {
        current = field(current, *number)?;
    }
    std::str::from_utf8(current)
        .ok()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_split_anywhere() {
        let mut stream = Vec::new();
        for payload in [&b"abc"[..], b"", b"hello world"] {
            stream.push(0);
            stream.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            stream.extend_from_slice(payload);
        }
        for split in 0..stream.len() {
            let mut counter = FrameCounter::default();
            counter.feed(&stream[..split]);
            counter.feed(&stream[split..]);
            assert_eq!(counter.messages, 3, "split at {split}");
        }
    }

    #[test]
    fn finds_nested_strings() {
        // UpdateHostRequest{host: Host{name: "hosts/a", mac: "x"}, update_mask: {...}}
        let host = [&[0x0a, 7][..], b"hosts/a", &[0x12, 1, b'x']].concat();
        let message = [
            &[0x08, 0x96, 0x01, 0x0a, host.len() as u8][..],
            &host,
            &[0x12, 0],
        ]
        .concat();
        assert_eq!(string_at(&message, &[1, 1]).as_deref(), Some("hosts/a"));
        assert_eq!(string_at(&message, &[1, 3]), None);
        assert_eq!(string_at(&message, &[2]), None);
        let framed = [&[0u8, 0, 0, 0, message.len() as u8][..], &message].concat();
        assert_eq!(first_message(&framed), Some(&message[..]));
    }
}
