//! `wss://` through rustls on 127.0.0.1, with a self-signed certificate made for the run: a
//! client that trusts it receives events in order; one that trusts another certificate, or that
//! speaks plain `ws://` to the TLS port, never opens; a stalled TLS handshake counts against the
//! upgrade timeout; a wss client whose WebSocket upgrades are refused falls back to HTTPS
//! long-polling.
#![cfg(feature = "tls")]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventwire_core::backoff::{BackoffPolicy, Jitter};
use eventwire_core::frame::Position;
use eventwire_tokio::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use eventwire_tokio::rustls::{self, RootCertStore};
use eventwire_tokio::{
    Client, ClientError, ClientOptions, Event, Hub, PollingOptions, Server, ServerConfig, Status,
    Transport,
};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key.
fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).unwrap();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    (certified.cert.der().clone(), key.into())
}

/// A wss server on 127.0.0.1 with a fresh certificate, and that certificate.
async fn server(config: ServerConfig) -> (Server, Hub, CertificateDer<'static>) {
    let (cert, key) = certificate();
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let hub = Hub::new(Default::default());
    // The application's rooms: clients cannot create rooms.
    hub.declare(["feed"]).unwrap();
    let server = Server::bind_tls("127.0.0.1:0", hub.clone(), config, Arc::new(tls))
        .await
        .unwrap();
    (server, hub, cert)
}

/// Client options trusting only `cert`, retrying quickly.
fn trusting(cert: CertificateDer<'static>) -> ClientOptions {
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let base = ClientOptions::default();
    let core = base.core.clone().backoff(
        BackoffPolicy::new()
            .initial(Duration::from_millis(10))
            .cap(Duration::from_millis(50))
            .jitter(Jitter::None),
    );
    base.core(core).adapter(|a| a.tls(Arc::new(tls)))
}

async fn next_event(client: &mut Client) -> Event {
    tokio::time::timeout(LIMIT, client.next())
        .await
        .expect("timed out waiting for an event")
        .expect("the client ended")
}

/// The client tries, fails, and is still not open a while later.
async fn never_opens(client: &Client) {
    let mut status = client.status();
    tokio::time::timeout(
        LIMIT,
        status.wait_for(|s| matches!(s, Status::Reconnecting { .. })),
    )
    .await
    .expect("the client never failed an attempt")
    .unwrap();
    let opened = tokio::time::timeout(
        Duration::from_millis(500),
        status.wait_for(|s| *s == Status::Open),
    )
    .await;
    assert!(opened.is_err(), "the client opened");
}

#[tokio::test]
async fn a_trusting_client_receives_events_in_order() {
    let (server, hub, cert) = server(ServerConfig::default()).await;
    // `localhost` may resolve to ::1 first; the client tries each address in turn.
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut client = Client::connect(&url, trusting(cert)).unwrap();
    client.subscribe("feed").await.unwrap();
    let subscribed = next_event(&mut client).await;
    assert!(
        matches!(&subscribed, Event::Subscribed { room, .. } if room == "feed"),
        "{subscribed:?}"
    );
    assert_eq!(*client.status().borrow(), Status::Open);
    for i in 0..20u32 {
        hub.emit("feed", "tick", &i).unwrap();
    }
    let mut last: Option<Position> = None;
    for i in 0..20u32 {
        let event = next_event(&mut client).await;
        let Event::Event {
            room,
            position,
            kind,
            ..
        } = &event
        else {
            panic!("unexpected {event:?}");
        };
        assert_eq!((room.as_str(), kind.as_str()), ("feed", "tick"));
        assert_eq!(event.json::<u32>().unwrap().unwrap(), i);
        // One epoch, consecutive offsets.
        if let Some(last) = last {
            assert_eq!(*position, Position::new(last.epoch, last.offset + 1));
        }
        last = Some(*position);
    }
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_ip_address_is_a_server_name_too() {
    let (server, _hub, cert) = server(ServerConfig::default()).await;
    let url = format!("wss://{}/", server.local_addr());
    let client = Client::connect(&url, trusting(cert)).unwrap();
    let mut status = client.status();
    tokio::time::timeout(LIMIT, status.wait_for(|s| *s == Status::Open))
        .await
        .expect("never opened")
        .unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_trusting_another_certificate_never_opens() {
    let (server, _hub, _cert) = server(ServerConfig::default()).await;
    let (other, _) = certificate();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let client = Client::connect(&url, trusting(other)).unwrap();
    never_opens(&client).await;
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn plain_ws_to_the_tls_port_never_opens() {
    let (server, _hub, cert) = server(ServerConfig::default()).await;
    let url = format!("ws://{}/", server.local_addr());
    // The TLS config is there, but a ws:// URL does not use it.
    let client = Client::connect(&url, trusting(cert)).unwrap();
    never_opens(&client).await;
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_dropped_at_the_upgrade_timeout() {
    let config = ServerConfig::default().upgrade_timeout(Duration::from_millis(200));
    let (server, _hub, _cert) = server(config).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // Say nothing: the server ends the connection once the upgrade timeout passes.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(LIMIT, tcp.read(&mut buf))
        .await
        .expect("the server kept a stalled handshake open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn wss_needs_a_tls_config() {
    let result = Client::connect("wss://localhost:1/", ClientOptions::default());
    assert!(
        matches!(
            result,
            Err(ClientError::InvalidUrl("wss needs TokioOptions::tls"))
        ),
        "{result:?}"
    );
}

/// A TLS front (its own certificate, returned) for the wss server at `backend`: it answers 403
/// to WebSocket upgrades and passes every other request to the backend over TLS, trusting
/// `backend_cert`; one request per connection, as the polling client sends them. A plain TCP
/// proxy cannot see the requests inside TLS, hence the termination. Also returns the count of
/// refused upgrades.
fn upgrade_refusing_front(
    backend: SocketAddr,
    backend_cert: CertificateDer<'static>,
) -> (SocketAddr, CertificateDer<'static>, Arc<AtomicUsize>) {
    let (cert, key) = certificate();
    let accept = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap(),
    );
    let mut roots = RootCertStore::empty();
    roots.add(backend_cert).unwrap();
    let connect = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let refused = Arc::new(AtomicUsize::new(0));
    let counter = refused.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (accept, connect, counter) = (accept.clone(), connect.clone(), counter.clone());
            std::thread::spawn(move || front(tcp, accept, connect, backend, &counter));
        }
    });
    (addr, cert, refused)
}

/// One connection of the front.
fn front(
    tcp: std::net::TcpStream,
    accept: Arc<rustls::ServerConfig>,
    connect: Arc<rustls::ClientConfig>,
    backend: SocketAddr,
    refused: &AtomicUsize,
) -> std::io::Result<()> {
    let conn = rustls::ServerConnection::new(accept).map_err(std::io::Error::other)?;
    let mut client = rustls::StreamOwned::new(conn, tcp);
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    if head.contains("upgrade: websocket") {
        refused.fetch_add(1, Ordering::Relaxed);
        client.write_all(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        client.conn.send_close_notify();
        return client.flush();
    }
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |n| n.trim().parse::<usize>().unwrap());
    let mut body = vec![0; length];
    client.read_exact(&mut body)?;
    // One request per connection, and the backend's answer read to its end: the backend is
    // asked to close after it (so is the client, through the answer's header).
    request.truncate(request.len() - 2);
    request.extend_from_slice(b"Connection: close\r\n\r\n");
    request.extend_from_slice(&body);
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(connect, name).map_err(std::io::Error::other)?;
    let mut server = rustls::StreamOwned::new(conn, std::net::TcpStream::connect(backend)?);
    server.write_all(&request)?;
    server.flush()?;
    let mut response = Vec::new();
    // The backend may end without a close_notify: what came before it counts.
    let _ = server.read_to_end(&mut response);
    client.write_all(&response)?;
    client.conn.send_close_notify();
    client.flush()
}

#[tokio::test]
async fn a_wss_client_whose_upgrades_are_refused_polls_over_https() {
    let (server, hub, backend_cert) = server(ServerConfig::default()).await;
    let (front, cert, refused) = upgrade_refusing_front(server.local_addr(), backend_cert);
    let url = format!("wss://{front}/");
    let options = trusting(cert).adapter(|a| a.polling(PollingOptions::new().after_failures(1)));
    let mut client = Client::connect(&url, options).unwrap();
    client.subscribe("feed").await.unwrap();
    let subscribed = next_event(&mut client).await;
    assert!(
        matches!(&subscribed, Event::Subscribed { room, .. } if room == "feed"),
        "{subscribed:?}"
    );
    assert_eq!(*client.transport().borrow(), Transport::Polling);
    assert!(refused.load(Ordering::Relaxed) >= 1);
    for i in 0..10u32 {
        hub.emit("feed", "tick", &i).unwrap();
    }
    for i in 0..10u32 {
        let event = next_event(&mut client).await;
        assert!(
            matches!(&event, Event::Event { kind, .. } if kind == "tick"),
            "{event:?}"
        );
        assert_eq!(event.json::<u32>().unwrap().unwrap(), i);
    }
    assert_eq!(*client.transport().borrow(), Transport::Polling);
    client.close().await;
    server.shutdown(Duration::from_secs(1)).await;
}
