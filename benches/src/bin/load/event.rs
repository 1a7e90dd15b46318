//! The event of W1-W3: about 120 bytes of JSON carrying a sequence number and the wall-clock
//! time of its emission (driver and server run on the same machine, so the same clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// The size every event is padded to.
pub const SIZE: usize = 120;

/// Room of W1-W4 on our server.
pub const ROOM: &str = "bench";
/// Kind of the W1-W3 events on our server.
pub const KIND: &str = "agent.status_changed";

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Event `seq`, stamped `t_ns`, padded to [`SIZE`] bytes (with current times and sequence
/// numbers below 10^7 the unpadded event is about 100 bytes).
pub fn payload(seq: u64, t_ns: u64) -> Vec<u8> {
    let mut s = format!(
        r#"{{"t":{t_ns},"seq":{seq},"agent_id":"agent-0042","status":"busy","task":"task-000917","p":""#
    );
    while s.len() + 2 < SIZE {
        s.push('x');
    }
    s.push_str("\"}");
    s.into_bytes()
}

/// The emission time an event carries (`{"t":<ns>,...`), without parsing the rest.
pub fn emitted_at(payload: &[u8]) -> Option<u64> {
    let digits = payload.strip_prefix(br#"{"t":"#)?;
    let mut t: u64 = 0;
    let mut any = false;
    for &b in digits.iter().take(20) {
        if !b.is_ascii_digit() {
            break;
        }
        t = t.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        any = true;
    }
    any.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_json_of_the_size_and_carries_its_time() {
        let p = payload(199_999, now_ns());
        assert_eq!(p.len(), SIZE);
        let v: serde_json::Value = serde_json::from_slice(&p).expect("JSON");
        assert_eq!(v["seq"], 199_999);
        assert_eq!(emitted_at(&p), v["t"].as_u64());
        assert_eq!(emitted_at(b"{\"t\":x"), None);
    }
}
