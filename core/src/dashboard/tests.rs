use super::*;
use crate::text::Name;
use serde::Serialize;
use std::vec::Vec;
use std::{format, vec};

fn details<'a>(pairs: &[(&'a str, &'a str)]) -> Details<'a> {
    pairs
        .iter()
        .map(|&(key, value)| Detail { key, value })
        .collect()
}

/// One event of every kind, in the order of [`KINDS`].
fn samples() -> Vec<DashboardEvent<'static>> {
    vec![
        AgentCreated {
            agent_id: "agent-1",
            name: "Researcher One",
            agent_type: "researcher",
            capabilities: ["search", "summarise"].into_iter().collect(),
        }
        .into(),
        AgentDeleted {
            agent_id: "agent-1",
            reason: Some("scaled down"),
        }
        .into(),
        AgentStatusChanged {
            agent_id: "agent-1",
            old_status: AgentStatus::Idle,
            new_status: AgentStatus::Busy,
            details: details(&[("task", "analysis")]),
        }
        .into(),
        AgentMetrics {
            agent_id: "agent-1",
            cpu_percent: 42.5,
            memory_mb: 512.0,
            tasks_in_progress: 2,
            tasks_completed: 1000,
            error_rate: 0.25,
        }
        .into(),
        TaskQueued {
            task_id: "task-9",
            task_type: "analysis",
            priority: 5,
            queue_depth: 12,
        }
        .into(),
        TaskAssigned {
            task_id: "task-9",
            agent_id: "agent-1",
            wait_ms: 250,
        }
        .into(),
        TaskCompleted {
            task_id: "task-9",
            agent_id: "agent-1",
            duration_ms: 1500,
            result: Some("3 findings"),
        }
        .into(),
        TaskFailed {
            task_id: "task-10",
            agent_id: None,
            error: "no agent with capability 'ocr'",
            retryable: true,
        }
        .into(),
        SystemAlert {
            level: AlertLevel::Critical,
            source: "scheduler",
            message: "queue above 10000 tasks",
        }
        .into(),
        SystemPerformance {
            cpu_percent: 63.5,
            memory_percent: 71.25,
            events_per_sec: 1200.0,
            connections: 48,
        }
        .into(),
        SystemStatus {
            status: SystemHealth::Degraded,
            agents_online: 7,
            tasks_pending: 31,
            uptime_s: 86_400,
        }
        .into(),
    ]
}

fn postcard_bytes(event: &DashboardEvent<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; event.postcard_len().unwrap()];
    let n = event.to_postcard(&mut buf).unwrap().len();
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn every_kind_round_trips_through_postcard() {
    let samples = samples();
    assert_eq!(samples.len(), KINDS.len());
    for (event, kind) in samples.iter().zip(KINDS) {
        assert_eq!(event.kind(), kind);
        let bytes = postcard_bytes(event);
        let decoded = DashboardEvent::decode_postcard(event.kind(), &bytes).unwrap();
        assert_eq!(&decoded, event);
    }
}

#[cfg(feature = "json")]
#[test]
fn every_kind_round_trips_through_json() {
    for event in samples() {
        let text = event.to_json().unwrap();
        let decoded = DashboardEvent::decode_json(event.kind(), &text).unwrap();
        assert_eq!(decoded, event);
    }
}

#[test]
fn postcard_golden_bytes() {
    let expected = [
        "076167656e742d310e52657365617263686572204f6e650a7265736561726368657202067365617263680973756d6d6172697365",
        "076167656e742d3101 0b7363616c656420646f776e",
        "076167656e742d31000101047461736b08616e616c79736973",
        "076167656e742d310000 2a4200000044 02e807000080 3e",
        "067461736b2d3908616e616c79736973050c",
        "067461736b2d39076167656e742d31fa01",
        "067461736b2d39076167656e742d31dc0b010a332066696e64696e6773",
        "077461736b2d3130001e6e6f206167656e742077697468206361706162696c69747920276f63722701",
        "03097363686564756c65721771756575652061626f7665203130303030207461736b73",
        "00007e42 00808e42 00009644 30",
        "01071f80a305",
    ];
    for (event, hex) in samples().iter().zip(expected) {
        let hex: std::string::String = hex.split_whitespace().collect();
        assert_eq!(hex::encode(postcard_bytes(event)), hex, "{}", event.kind());
    }
}

#[cfg(feature = "json")]
#[test]
fn json_golden_text() {
    let expected = [
        r#"{"agent_id":"agent-1","name":"Researcher One","agent_type":"researcher","capabilities":["search","summarise"]}"#,
        r#"{"agent_id":"agent-1","reason":"scaled down"}"#,
        r#"{"agent_id":"agent-1","old_status":"idle","new_status":"busy","details":{"task":"analysis"}}"#,
        r#"{"agent_id":"agent-1","cpu_percent":42.5,"memory_mb":512.0,"tasks_in_progress":2,"tasks_completed":1000,"error_rate":0.25}"#,
        r#"{"task_id":"task-9","task_type":"analysis","priority":5,"queue_depth":12}"#,
        r#"{"task_id":"task-9","agent_id":"agent-1","wait_ms":250}"#,
        r#"{"task_id":"task-9","agent_id":"agent-1","duration_ms":1500,"result":"3 findings"}"#,
        r#"{"task_id":"task-10","agent_id":null,"error":"no agent with capability 'ocr'","retryable":true}"#,
        r#"{"level":"critical","source":"scheduler","message":"queue above 10000 tasks"}"#,
        r#"{"cpu_percent":63.5,"memory_percent":71.25,"events_per_sec":1200.0,"connections":48}"#,
        r#"{"status":"degraded","agents_online":7,"tasks_pending":31,"uptime_s":86400}"#,
    ];
    for (event, json) in samples().iter().zip(expected) {
        assert_eq!(
            std::str::from_utf8(&event.to_json().unwrap()).unwrap(),
            json,
            "{}",
            event.kind()
        );
    }
}

#[test]
fn kind_room_key_class_table() {
    type Row = (&'static str, &'static str, Option<&'static str>, EventClass);
    let table: [Row; 11] = [
        ("agent.created", "agents", None, EventClass::Normal),
        ("agent.deleted", "agents", None, EventClass::Normal),
        ("agent.status_changed", "agents", None, EventClass::Normal),
        (
            "agent.metrics",
            "agents",
            Some("agent.metrics:agent-1"),
            EventClass::Metrics,
        ),
        ("task.queued", "tasks", None, EventClass::Normal),
        ("task.assigned", "tasks", None, EventClass::Normal),
        ("task.completed", "tasks", None, EventClass::Normal),
        ("task.failed", "tasks", None, EventClass::Normal),
        ("system.alert", "system", None, EventClass::Normal),
        (
            "system.performance",
            "system",
            Some("system.performance"),
            EventClass::Metrics,
        ),
        (
            "system.status",
            "system",
            Some("system.status"),
            EventClass::Normal,
        ),
    ];
    for (event, (kind, room, key, class)) in samples().iter().zip(table) {
        assert_eq!(event.kind(), kind);
        assert_eq!(event.room(), room, "{kind}");
        let got = event.coalesce_key().unwrap();
        assert_eq!(got.as_ref().map(CoalesceKey::as_str), key, "{kind}");
        assert_eq!(event.class(), class, "{kind}");
    }
}

#[test]
fn kinds_rooms_and_keys_are_valid_names() {
    for kind in KINDS {
        assert!(Name::new(kind).is_ok(), "{kind}");
    }
    for room in [AGENTS_ROOM, TASKS_ROOM, SYSTEM_ROOM] {
        assert!(Name::new(room).is_ok(), "{room}");
    }
    for event in samples() {
        if let Some(key) = event.coalesce_key().unwrap() {
            assert!(Name::new(key.as_str()).is_ok(), "{key}");
        }
    }
    // The longest agent id that fits gives a key of exactly the longest name.
    let id = "a".repeat(MAX_KEYED_AGENT_ID_LEN);
    let key = metrics(&id).coalesce_key().unwrap().unwrap();
    assert_eq!(key.as_str().len(), crate::text::MAX_NAME_LEN);
    assert!(Name::new(key.as_str()).is_ok());
    assert_eq!(key, format!("agent.metrics:{id}").as_str());
}

fn metrics(agent_id: &str) -> DashboardEvent<'_> {
    DashboardEvent::AgentMetrics(AgentMetrics {
        agent_id,
        cpu_percent: 1.0,
        memory_mb: 2.0,
        tasks_in_progress: 0,
        tasks_completed: 0,
        error_rate: 0.0,
    })
}

#[test]
fn agent_id_that_is_not_a_name_has_no_key() {
    let too_long = "a".repeat(MAX_KEYED_AGENT_ID_LEN + 1);
    for bad in ["", "agent 1", "agent/1", "caf\u{e9}", too_long.as_str()] {
        assert_eq!(
            metrics(bad).coalesce_key(),
            Err(DashboardError::InvalidAgentId),
            "{bad:?}"
        );
    }
    // Ids of events without a key are not checked.
    let deleted = DashboardEvent::from(AgentDeleted {
        agent_id: "agent 1",
        reason: None,
    });
    assert_eq!(deleted.coalesce_key(), Ok(None));
}

#[test]
fn unknown_kind_is_an_error() {
    let bytes = postcard_bytes(&samples()[0]);
    for kind in ["", "agent", "agent.created.v2", "AGENT.CREATED", "task.*"] {
        assert_eq!(
            DashboardEvent::decode_postcard(kind, &bytes),
            Err(DashboardError::UnknownKind)
        );
        #[cfg(feature = "json")]
        assert_eq!(
            DashboardEvent::decode_json(kind, b"{}"),
            Err(DashboardError::UnknownKind)
        );
    }
}

#[test]
fn payload_of_another_kind_is_an_error() {
    // A system status is four bytes here; read as a status change (a string, two enums, a
    // map) it runs out of bytes.
    let status = DashboardEvent::from(SystemStatus {
        status: SystemHealth::Down,
        agents_online: 0,
        tasks_pending: 0,
        uptime_s: 0,
    });
    let bytes = postcard_bytes(&status);
    assert_eq!(
        DashboardEvent::decode_postcard(AgentStatusChanged::KIND, &bytes),
        Err(DashboardError::Malformed)
    );
    #[cfg(feature = "json")]
    for (i, event) in samples().iter().enumerate() {
        let text = event.to_json().unwrap();
        for (j, kind) in KINDS.iter().enumerate() {
            // JSON ignores unknown fields, so `agent.deleted` (an `agent_id` and an optional
            // reason) accepts any payload with an `agent_id`; every other pair fails.
            if i != j && *kind != AgentDeleted::KIND {
                assert_eq!(
                    DashboardEvent::decode_json(kind, &text),
                    Err(DashboardError::Malformed),
                    "{} as {kind}",
                    event.kind()
                );
            }
        }
    }
}

#[test]
fn truncated_or_garbage_payload_is_an_error() {
    for event in samples() {
        let bytes = postcard_bytes(&event);
        for cut in 0..bytes.len() {
            assert_eq!(
                DashboardEvent::decode_postcard(event.kind(), &bytes[..cut]),
                Err(DashboardError::Malformed),
                "{} cut at {cut}",
                event.kind()
            );
        }
        #[cfg(feature = "json")]
        {
            let text = event.to_json().unwrap();
            for cut in 0..text.len() {
                assert_eq!(
                    DashboardEvent::decode_json(event.kind(), &text[..cut]),
                    Err(DashboardError::Malformed)
                );
            }
            assert_eq!(
                DashboardEvent::decode_json(event.kind(), &bytes),
                Err(DashboardError::Malformed)
            );
        }
    }
    // Bad enum index, bad bool, bad UTF-8, huge length.
    let garbage: [(&str, &[u8]); 4] = [
        (SystemStatus::KIND, &[9, 0, 0, 0]),
        (TaskFailed::KIND, &[1, b't', 0, 1, b'e', 2]),
        (AgentDeleted::KIND, &[2, 0xff, 0xfe, 0]),
        (AgentDeleted::KIND, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
    ];
    for (kind, bytes) in garbage {
        assert_eq!(
            DashboardEvent::decode_postcard(kind, bytes),
            Err(DashboardError::Malformed),
            "{kind} {bytes:02x?}"
        );
    }
}

#[test]
fn trailing_postcard_bytes_are_ignored() {
    let event = &samples()[3];
    let mut bytes = postcard_bytes(event);
    bytes.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        DashboardEvent::decode_postcard(event.kind(), &bytes).as_ref(),
        Ok(event)
    );
}

/// The fields of [`AgentCreated`] and [`AgentStatusChanged`] without their capacity limits.
#[derive(Serialize)]
struct WideCreated<'a> {
    agent_id: &'a str,
    name: &'a str,
    agent_type: &'a str,
    capabilities: &'a [&'a str],
}

#[derive(Serialize)]
struct WideStatus<'a> {
    agent_id: &'a str,
    old_status: AgentStatus,
    new_status: AgentStatus,
    details: std::collections::BTreeMap<std::string::String, &'a str>,
}

fn wide(n: usize) -> (WideCreated<'static>, WideStatus<'static>) {
    const CAPS: [&str; 9] = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let created = WideCreated {
        agent_id: "agent-1",
        name: "one",
        agent_type: "t",
        capabilities: &CAPS[..n],
    };
    let status = WideStatus {
        agent_id: "agent-1",
        old_status: AgentStatus::Starting,
        new_status: AgentStatus::Idle,
        details: (0..n).map(|i| (format!("k{i}"), "v")).collect(),
    };
    (created, status)
}

#[test]
fn lists_over_capacity_do_not_decode() {
    assert_eq!(MAX_CAPABILITIES, 8);
    assert_eq!(MAX_DETAILS, 8);
    for (n, fits) in [(8, true), (9, false)] {
        let (created, status) = wide(n);
        let c = postcard::to_allocvec(&created).unwrap();
        let s = postcard::to_allocvec(&status).unwrap();
        let rc = DashboardEvent::decode_postcard(AgentCreated::KIND, &c);
        let rs = DashboardEvent::decode_postcard(AgentStatusChanged::KIND, &s);
        assert_eq!(rc.is_ok(), fits, "{rc:?}");
        assert_eq!(rs.is_ok(), fits, "{rs:?}");
        if !fits {
            assert_eq!(rc, Err(DashboardError::Malformed));
            assert_eq!(rs, Err(DashboardError::Malformed));
        }
        #[cfg(feature = "json")]
        {
            let c = serde_json::to_vec(&created).unwrap();
            let s = serde_json::to_vec(&status).unwrap();
            let rc = DashboardEvent::decode_json(AgentCreated::KIND, &c);
            let rs = DashboardEvent::decode_json(AgentStatusChanged::KIND, &s);
            assert_eq!(rc.is_ok(), fits, "{rc:?}");
            assert_eq!(rs.is_ok(), fits, "{rs:?}");
            if !fits {
                assert_eq!(rc, Err(DashboardError::Malformed));
                assert_eq!(rs, Err(DashboardError::Malformed));
            }
        }
    }
}

#[test]
fn small_buffer_is_an_error() {
    for event in samples() {
        let len = event.postcard_len().unwrap();
        let mut buf = vec![0u8; len - 1];
        assert_eq!(
            event.to_postcard(&mut buf),
            Err(postcard::Error::SerializeBufferFull)
        );
    }
}

#[cfg(feature = "json")]
#[test]
fn json_lists_may_be_omitted() {
    let created = br#"{"agent_id":"a","name":"n","agent_type":"t"}"#;
    let status = br#"{"agent_id":"a","old_status":"error","new_status":"stopping","x":1}"#;
    let DashboardEvent::AgentCreated(c) =
        DashboardEvent::decode_json(AgentCreated::KIND, created).unwrap()
    else {
        panic!("wrong variant")
    };
    assert!(c.capabilities.is_empty());
    let DashboardEvent::AgentStatusChanged(s) =
        DashboardEvent::decode_json(AgentStatusChanged::KIND, status).unwrap()
    else {
        panic!("wrong variant")
    };
    assert_eq!(
        (s.old_status, s.new_status),
        (AgentStatus::Error, AgentStatus::Stopping)
    );
    assert!(s.details.is_empty());
    // A missing optional field reads as absent.
    assert_eq!(
        DashboardEvent::decode_json(AgentDeleted::KIND, br#"{"agent_id":"a"}"#),
        Ok(DashboardEvent::AgentDeleted(AgentDeleted {
            agent_id: "a",
            reason: None
        }))
    );
}

#[cfg(feature = "json")]
#[test]
fn json_strings_with_escapes_encode_but_do_not_decode_borrowed() {
    let alert = DashboardEvent::from(SystemAlert {
        level: AlertLevel::Error,
        source: "db",
        message: "disk \"sda\" full\n",
    });
    let text = alert.to_json().unwrap();
    let value: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(value["message"], "disk \"sda\" full\n");
    assert_eq!(
        DashboardEvent::decode_json(alert.kind(), &text),
        Err(DashboardError::Malformed)
    );
    // Unescaped non-ASCII borrows fine; the same text escaped as \u does not.
    let raw = "{\"level\":\"info\",\"source\":\"caf\u{e9}\",\"message\":\"\"}";
    assert!(DashboardEvent::decode_json(SystemAlert::KIND, raw.as_bytes()).is_ok());
    let escaped = br#"{"level":"info","source":"caf\u00e9","message":""}"#;
    assert_eq!(
        DashboardEvent::decode_json(SystemAlert::KIND, escaped),
        Err(DashboardError::Malformed)
    );
    // Postcard carries the same alert unchanged.
    let bytes = postcard_bytes(&alert);
    assert_eq!(
        DashboardEvent::decode_postcard(alert.kind(), &bytes),
        Ok(alert)
    );
}

#[test]
fn errors_display() {
    use std::string::ToString;
    assert_eq!(
        DashboardError::UnknownKind.to_string(),
        "unknown dashboard event kind"
    );
    assert!(DashboardError::Malformed.to_string().contains("payload"));
    assert!(DashboardError::InvalidAgentId
        .to_string()
        .contains(&MAX_KEYED_AGENT_ID_LEN.to_string()));
}
