//! What both adapters' client handles share: the options' defaults and setters, the handles'
//! error and its text, and the payload bytes a publish sends in each form.

use eventwire_core::client::handle::{json_payload, raw_payload};
use eventwire_core::client::{AdapterOptions, ClientConfig, ClientError, HandleError, Options};
use eventwire_core::codec::Codec;
use eventwire_core::outbox::OutboxError;

/// An adapter's own options, for the tests: one setting, and a fixed "fresh" id.
#[derive(Debug, Clone, Default, PartialEq)]
struct Extra {
    flag: bool,
}

impl AdapterOptions for Extra {
    fn fresh_id() -> u64 {
        u64::MAX
    }
}

#[test]
fn options_have_documented_defaults() {
    let o = Options::<Extra>::new(5);
    assert_eq!(o.core.client_id, 5);
    assert_eq!(o.codec, Codec::Binary);
    assert_eq!(o.max_message, 64 * 1024);
    assert_eq!(o.events_capacity, 1024);
    assert_eq!(o.seed, None);
    assert_eq!(o.adapter, Extra::default());
    // The default id comes from the adapter, masked to 53 bits like any other.
    assert_eq!(Options::<Extra>::default().core.client_id, (1 << 53) - 1);
}

#[test]
fn setters_set_and_max_message_follows_the_core_config() {
    let o = Options::<Extra>::new(1)
        .max_message(10)
        .core(ClientConfig::new(2).max_frame(1000));
    assert_eq!((o.core.client_id, o.max_message), (2, 1000));
    let o = o
        .max_message(2000)
        .codec(Codec::Json)
        .seed(9)
        .events_capacity(0)
        .adapter(|a| Extra { flag: !a.flag });
    assert_eq!(o.max_message, 2000);
    assert_eq!(o.codec, Codec::Json);
    assert_eq!(o.seed, Some(9));
    assert_eq!(o.events_capacity, 1);
    assert!(o.adapter.flag);
}

#[test]
fn the_connection_is_built_from_the_options() {
    let o = Options::<Extra>::new(3).codec(Codec::Json).seed(1);
    let connection = o.connection();
    assert_eq!(connection.codec(), Codec::Json);
    assert_eq!(connection.machine().config().client_id, 3);
    // Without a seed the adapter's entropy is drawn; the connection is built all the same.
    let unseeded = Options::<Extra>::new(3).connection();
    assert_eq!(unseeded.codec(), Codec::Binary);
}

#[test]
fn handle_errors_display_and_map_the_machine_s_refusals() {
    assert_eq!(
        HandleError::InvalidUrl("no host").to_string(),
        "invalid URL: no host"
    );
    assert_eq!(HandleError::Closed.to_string(), "client closed");
    assert_eq!(
        HandleError::Core(ClientError::Outbox(OutboxError::Full)).to_string(),
        "outbox full: publish refused"
    );
    assert!(matches!(
        HandleError::from_core(ClientError::Closed),
        HandleError::Closed
    ));
    assert!(matches!(
        HandleError::from_core(ClientError::TooManyRooms),
        HandleError::Core(ClientError::TooManyRooms)
    ));
}

#[test]
fn raw_payloads_must_be_json_only_in_the_json_form() {
    let not_json = b"\xff not json";
    assert_eq!(raw_payload(Codec::Binary, not_json).unwrap(), not_json);
    assert!(matches!(
        raw_payload(Codec::Json, not_json),
        Err(HandleError::Payload(_))
    ));
    assert_eq!(
        raw_payload(Codec::Json, b"{\"a\":1}").unwrap(),
        b"{\"a\":1}"
    );
    assert_eq!(json_payload(&[1, 2]).unwrap(), b"[1,2]");
}
