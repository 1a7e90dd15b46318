//! Shared workloads of the eventwire benches.

/// A typical dashboard event payload: an agent status change as JSON, about 120 bytes.
pub const STATUS_PAYLOAD: &[u8] = br#"{"agent_id":"agent-0042","old_status":"idle","new_status":"busy","details":{"task":"task-000917","queue":"analysis"}}"#;
