//! Property tests of the dashboard events: arbitrary metrics and status changes round-trip through
//! both payload encodings, and the decoders never panic on arbitrary bytes.

use eventwire_core::dashboard::{
    AgentMetrics, AgentStatus, AgentStatusChanged, DashboardError, DashboardEvent, Detail, KINDS,
    MAX_DETAILS,
};
use eventwire_core::text::Name;
use proptest::collection::vec;
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("EVENTWIRE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Owned material an [`AgentMetrics`] borrows from.
#[derive(Debug, Clone)]
struct MetricsSpec {
    agent_id: String,
    cpu_percent: f32,
    memory_mb: f32,
    tasks_in_progress: u32,
    tasks_completed: u64,
    error_rate: f32,
}

impl MetricsSpec {
    fn event(&self) -> DashboardEvent<'_> {
        DashboardEvent::AgentMetrics(AgentMetrics {
            agent_id: &self.agent_id,
            cpu_percent: self.cpu_percent,
            memory_mb: self.memory_mb,
            tasks_in_progress: self.tasks_in_progress,
            tasks_completed: self.tasks_completed,
            error_rate: self.error_rate,
        })
    }
}

/// Owned material an [`AgentStatusChanged`] borrows from.
#[derive(Debug, Clone)]
struct StatusSpec {
    agent_id: String,
    old_status: AgentStatus,
    new_status: AgentStatus,
    details: Vec<(String, String)>,
}

impl StatusSpec {
    fn event(&self) -> DashboardEvent<'_> {
        DashboardEvent::AgentStatusChanged(AgentStatusChanged {
            agent_id: &self.agent_id,
            old_status: self.old_status,
            new_status: self.new_status,
            details: self
                .details
                .iter()
                .map(|(key, value)| Detail { key, value })
                .collect(),
        })
    }
}

/// Finite floats of either sign, normal, subnormal or zero (NaN never equals itself, and JSON
/// cannot carry non-finite values).
fn finite() -> impl Strategy<Value = f32> {
    use proptest::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// An agent id that is a valid name.
fn agent_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,64}"
}

/// Text for the binary form: any string at all.
fn any_text() -> BoxedStrategy<String> {
    any::<String>().boxed()
}

/// Text the JSON decoder can borrow: nothing JSON escapes (quote, backslash, control characters);
/// any other character, non-ASCII included, is written raw.
fn json_text() -> BoxedStrategy<String> {
    "[^\"\\\\\\x00-\\x1f]{0,24}".boxed()
}

fn status() -> impl Strategy<Value = AgentStatus> {
    prop_oneof![
        Just(AgentStatus::Idle),
        Just(AgentStatus::Busy),
        Just(AgentStatus::Offline),
        Just(AgentStatus::Error),
        Just(AgentStatus::Starting),
        Just(AgentStatus::Stopping),
    ]
}

fn metrics() -> impl Strategy<Value = MetricsSpec> {
    (
        agent_id(),
        finite(),
        finite(),
        any::<u32>(),
        any::<u64>(),
        finite(),
    )
        .prop_map(
            |(agent_id, cpu_percent, memory_mb, tasks_in_progress, tasks_completed, error_rate)| {
                MetricsSpec {
                    agent_id,
                    cpu_percent,
                    memory_mb,
                    tasks_in_progress,
                    tasks_completed,
                    error_rate,
                }
            },
        )
}

fn status_change(text: BoxedStrategy<String>) -> impl Strategy<Value = StatusSpec> {
    (
        text.clone(),
        status(),
        status(),
        vec((text.clone(), text), 0..=MAX_DETAILS),
    )
        .prop_map(|(agent_id, old_status, new_status, details)| StatusSpec {
            agent_id,
            old_status,
            new_status,
            details,
        })
}

fn postcard_round_trip(event: &DashboardEvent<'_>) -> Result<(), TestCaseError> {
    let mut buf = vec![0u8; event.postcard_len().unwrap()];
    let bytes = event.to_postcard(&mut buf).unwrap();
    let decoded = DashboardEvent::decode_postcard(event.kind(), bytes).unwrap();
    prop_assert_eq!(&decoded, event);
    // A strict prefix never decodes.
    for cut in 0..bytes.len() {
        prop_assert_eq!(
            DashboardEvent::decode_postcard(event.kind(), &bytes[..cut]),
            Err(DashboardError::Malformed)
        );
    }
    Ok(())
}

fn json_round_trip(event: &DashboardEvent<'_>) -> Result<(), TestCaseError> {
    let text = event.to_json().unwrap();
    let decoded = DashboardEvent::decode_json(event.kind(), &text).unwrap();
    prop_assert_eq!(&decoded, event);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn agent_metrics_round_trip_postcard(spec in metrics()) {
        postcard_round_trip(&spec.event())?;
    }

    #[test]
    fn agent_metrics_round_trip_json(spec in metrics()) {
        json_round_trip(&spec.event())?;
    }

    #[test]
    fn agent_metrics_key_is_a_name(spec in metrics()) {
        let event = spec.event();
        match event.coalesce_key() {
            Ok(Some(key)) => {
                prop_assert!(Name::new(key.as_str()).is_ok());
                prop_assert_eq!(key.as_str(), format!("agent.metrics:{}", spec.agent_id));
            }
            Ok(None) => prop_assert!(false, "metrics always coalesce"),
            Err(e) => {
                prop_assert_eq!(e, DashboardError::InvalidAgentId);
                prop_assert!(spec.agent_id.len() > eventwire_core::dashboard::MAX_KEYED_AGENT_ID_LEN);
            }
        }
    }

    #[test]
    fn agent_status_changed_round_trip_postcard(spec in status_change(any_text())) {
        postcard_round_trip(&spec.event())?;
    }

    #[test]
    fn agent_status_changed_round_trip_json(spec in status_change(json_text())) {
        json_round_trip(&spec.event())?;
    }

    #[test]
    fn decoders_never_panic(kind in 0..KINDS.len(), bytes in vec(any::<u8>(), 0..96)) {
        let kind = KINDS[kind];
        let _ = DashboardEvent::decode_postcard(kind, &bytes);
        let _ = DashboardEvent::decode_json(kind, &bytes);
    }
}
