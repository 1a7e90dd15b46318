//! The HTTP of the tokio client's polling transport, through the public `Client` against fake
//! HTTP servers on 127.0.0.1 written byte by byte: every WebSocket upgrade is refused (403), so
//! the client (`after_failures(1)`) polls, and each test decides how the polling requests are
//! answered. What a request looks like, how response bodies may be framed, the body limit
//! (`max_message * 64`) enforced as the body arrives, malformed responses, the head limit, and
//! connections the server keeps open. The fallback's decisions themselves are tested in the
//! core (`core/tests/fallback.rs`); the switch to polling and back in `poll_client.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventwire_core::backoff::{BackoffPolicy, Jitter};
use eventwire_core::codec::{stream, Codec};
use eventwire_core::frame::{Frame, Welcome};
use eventwire_tokio::{Client, ClientOptions, PollingOptions, Status, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// No await in these tests may take longer: fail, don't hang.
const LIMIT: Duration = Duration::from_secs(5);
/// The client's largest message; its polling response bodies are limited to 64 times this.
const MAX_MESSAGE: usize = 1024;
const BODY_LIMIT: usize = MAX_MESSAGE * 64;

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// What the fake server saw.
#[derive(Debug)]
enum Seen {
    /// A WebSocket upgrade request, refused.
    Get,
    /// A polling request: the connection's number, its head (lower case) and body.
    Post {
        conn: usize,
        head: String,
        body: Vec<u8>,
    },
    /// The client closed connection `conn`.
    Closed(usize),
}

/// What the server does with a connection after writing a response.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Then {
    /// Closes it.
    Close,
    /// Reads the next request from it.
    Keep,
    /// Keeps it open, reading nothing more, until the client closes it.
    Stall,
}

/// How the server answers the `n`th polling request (from 0) with head `head`: the response's
/// bytes, how long it holds the request first, and what happens to the connection after.
type Answer = Arc<dyn Fn(usize, &str) -> (Vec<u8>, Duration, Then) + Send + Sync>;

struct Fake {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    connections: Arc<AtomicUsize>,
}

impl Fake {
    async fn start(answer: Answer) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let posts = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst);
                let (answer, seen, posts) = (answer.clone(), seen_tx.clone(), posts.clone());
                tokio::spawn(serve(tcp, conn, answer, seen, posts));
            }
        });
        Fake {
            addr,
            seen,
            connections,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Skips what the server saw until `wanted` returns something.
    async fn expect<T>(&mut self, what: &str, mut wanted: impl FnMut(Seen) -> Option<T>) -> T {
        within(what, async {
            loop {
                let seen = self.seen.recv().await.expect("server gone");
                if let Some(found) = wanted(seen) {
                    return found;
                }
            }
        })
        .await
    }

    /// The next polling request: (connection, head, body).
    async fn post(&mut self) -> (usize, String, Vec<u8>) {
        self.expect("a polling request", |seen| match seen {
            Seen::Post { conn, head, body } => Some((conn, head, body)),
            _ => None,
        })
        .await
    }
}

async fn serve(
    mut tcp: TcpStream,
    conn: usize,
    answer: Answer,
    seen: mpsc::UnboundedSender<Seen>,
    posts: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some((head, body)) = read_request(&mut tcp, &mut buf).await else {
            let _ = seen.send(Seen::Closed(conn));
            return;
        };
        let head = head.to_ascii_lowercase();
        if head.starts_with("get ") {
            let _ = seen.send(Seen::Get);
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        let n = posts.fetch_add(1, Ordering::SeqCst);
        let (response, hold, then) = answer(n, &head);
        let _ = seen.send(Seen::Post {
            conn,
            head,
            body: body.clone(),
        });
        tokio::time::sleep(hold).await;
        if tcp.write_all(&response).await.is_err() {
            return;
        }
        match then {
            Then::Close => return,
            Then::Keep => {}
            Then::Stall => {
                let mut rest = [0u8; 1024];
                while matches!(tcp.read(&mut rest).await, Ok(n) if n > 0) {}
                let _ = seen.send(Seen::Closed(conn));
                return;
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body) from `tcp`, keeping what follows it in
/// `buf`; `None` at the end of the connection.
async fn read_request(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(start) = parsed.parse(buf).unwrap() {
            let length = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map_or(0, |h| {
                    std::str::from_utf8(h.value).unwrap().parse().unwrap()
                });
            while buf.len() < start + length {
                let mut chunk = [0u8; 4096];
                let n = tcp.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8(buf[..start].to_vec()).unwrap();
            let body = buf[start..start + length].to_vec();
            buf.drain(..start + length);
            return Some((head, body));
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A polling response body with the server's welcome, in `codec`'s form.
fn welcome(codec: Codec) -> Vec<u8> {
    let frame = Frame::Welcome(Welcome {
        version: 1,
        session_id: 1,
        heartbeat_ms: 10_000,
        max_frame: 64 * 1024,
        max_subscriptions: 64,
        publish_rate: 1000,
    });
    let mut body = Vec::new();
    if codec.is_text() {
        body.push(b'[');
        codec.encode_into(&frame, &mut body).unwrap();
        body.push(b']');
    } else {
        stream::encode_into(&frame, &mut body).unwrap();
    }
    body
}

/// A 200 response with the session token `s1` and `body`, framed by `Content-Length`.
fn ok(body: &[u8], keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive {
        ""
    } else {
        "Connection: close\r\n"
    };
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\n{connection}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// `first` answers the session's first request; every later one is held 100 ms and answered
/// with no frames, on a connection the server keeps open.
fn first_then_empty(codec: Codec, first: Vec<u8>, then: Then) -> Answer {
    Arc::new(move |n, _| {
        if n == 0 {
            (first.clone(), Duration::ZERO, then)
        } else {
            let empty: &[u8] = if codec.is_text() { b"[]" } else { b"" };
            (ok(empty, true), Duration::from_millis(100), Then::Keep)
        }
    })
}

/// Options that poll after one failed upgrade, with a backoff of 10 to 50 ms.
fn options(codec: Codec) -> ClientOptions {
    let base = ClientOptions::new(7)
        .seed(1)
        .codec(codec)
        .adapter(|a| a.polling(PollingOptions::new().after_failures(1)));
    let core = base.core.clone().backoff(
        BackoffPolicy::new()
            .initial(Duration::from_millis(10))
            .cap(Duration::from_millis(50))
            .jitter(Jitter::None),
    );
    base.core(core).max_message(MAX_MESSAGE)
}

async fn open(client: &Client) {
    let mut status = client.status();
    within("open", status.wait_for(|s| *s == Status::Open))
        .await
        .unwrap();
    assert_eq!(*client.transport().borrow(), Transport::Polling);
}

#[tokio::test]
async fn requests_follow_the_protocol() {
    for codec in [Codec::Json, Codec::Binary] {
        let first = ok(&welcome(codec), true);
        let mut fake = Fake::start(first_then_empty(codec, first, Then::Keep)).await;
        let client = Client::connect(&fake.url(), options(codec)).unwrap();
        fake.expect("the refused upgrade", |s| {
            matches!(s, Seen::Get).then_some(())
        })
        .await;
        let (_, head, body) = fake.post().await;
        let content_type = if codec.is_text() {
            "application/json"
        } else {
            "application/octet-stream"
        };
        assert!(
            head.starts_with("post /eventwire/poll http/1.1\r\n"),
            "{head}"
        );
        for header in [
            format!("host: {}", fake.addr),
            format!("content-type: {content_type}"),
            format!("accept: {content_type}"),
            format!("content-length: {}", body.len()),
        ] {
            assert!(
                head.contains(&format!("\r\n{header}\r\n")),
                "{header} in {head}"
            );
        }
        // A session's first request has no token and the number 1; it carries the hello.
        assert!(!head.contains("eventwire-session"), "{head}");
        assert!(head.contains("\r\neventwire-seq: 1\r\n"), "{head}");
        assert!(!body.is_empty());
        if codec.is_text() {
            let hello: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(hello.as_array().map(Vec::len), Some(1), "{hello}");
        }
        open(&client).await;
        // The next requests carry the token; an empty body still says its length.
        let (_, head, body) = fake.post().await;
        assert!(head.contains("\r\neventwire-session: s1\r\n"), "{head}");
        // Numbered on: the second or (if two went out at once) the third request.
        assert!(
            ["2", "3"]
                .iter()
                .any(|n| head.contains(&format!("\r\neventwire-seq: {n}\r\n"))),
            "{head}"
        );
        let empty: &[u8] = if codec.is_text() { b"[]" } else { b"" };
        let (head, _) = within("a plain long-poll", async {
            let mut next = (head, body);
            while next.1 != empty {
                let (_, head, body) = fake.post().await;
                next = (head, body);
            }
            next
        })
        .await;
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", empty.len())),
            "{head}"
        );
        within("close", client.close()).await;
    }
}

#[tokio::test]
async fn the_path_comes_from_the_options_and_a_bad_one_sends_nothing() {
    let first = ok(&welcome(Codec::Json), true);
    let mut fake = Fake::start(first_then_empty(Codec::Json, first, Then::Keep)).await;
    let custom = options(Codec::Json)
        .adapter(|a| a.polling(PollingOptions::new().after_failures(1).path("x/y")));
    let client = Client::connect(&fake.url(), custom).unwrap();
    let (_, head, _) = fake.post().await;
    assert!(head.starts_with("post /x/y http/1.1\r\n"), "{head}");
    open(&client).await;
    within("close", client.close()).await;

    // A path that is no request target: no request goes out, each session fails at once and
    // the client keeps reconnecting.
    let first = ok(&welcome(Codec::Json), true);
    let mut fake = Fake::start(first_then_empty(Codec::Json, first, Then::Keep)).await;
    let bad = options(Codec::Json)
        .adapter(|a| a.polling(PollingOptions::new().after_failures(1).path("a b")));
    let client = Client::connect(&fake.url(), bad).unwrap();
    let mut transport = client.transport();
    within(
        "a polling session",
        transport.wait_for(|t| *t == Transport::Polling),
    )
    .await
    .unwrap();
    let mut status = client.status();
    within(
        "failed sessions",
        status.wait_for(|s| matches!(s, Status::Reconnecting { attempt, .. } if *attempt >= 4)),
    )
    .await
    .unwrap();
    while let Ok(seen) = fake.seen.try_recv() {
        assert!(
            !matches!(seen, Seen::Post { .. }),
            "a request went out: {seen:?}"
        );
    }
    within("close", client.close()).await;
}

#[tokio::test]
async fn bodies_are_framed_by_length_by_chunks_or_by_the_end() {
    let body = welcome(Codec::Json);
    let chunked = {
        let (a, b) = body.split_at(body.len() / 2);
        let mut response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nEventwire-Session: s1\r\n\r\n"
                .to_vec();
        for part in [a, b] {
            response.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            response.extend_from_slice(part);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        response
    };
    let mut by_end =
        b"HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\nConnection: close\r\n\r\n".to_vec();
    by_end.extend_from_slice(&body);
    // Exactly the limit is allowed, however it comes: the welcome padded with spaces, chunked.
    let at_limit = {
        let mut padded = body.clone();
        pad(&mut padded, BODY_LIMIT);
        let mut response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nEventwire-Session: s1\r\n\r\n"
                .to_vec();
        for part in padded.chunks(4096) {
            response.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            response.extend_from_slice(part);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        response
    };
    for (what, response, then) in [
        ("chunked", chunked, Then::Keep),
        ("framed by the end", by_end, Then::Close),
        ("at the limit", at_limit, Then::Keep),
    ] {
        let mut fake = Fake::start(first_then_empty(Codec::Json, response, then)).await;
        let client = Client::connect(&fake.url(), options(Codec::Json)).unwrap();
        fake.post().await;
        let mut status = client.status();
        // The status guard is dropped at once: the client's task writes the status on close.
        let opened = tokio::time::timeout(LIMIT, status.wait_for(|s| *s == Status::Open))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(opened, "{what}: the welcome was read");
        within("close", client.close()).await;
    }
}

/// Pads a JSON array body with spaces before its closing bracket to `len` bytes.
fn pad(body: &mut Vec<u8>, len: usize) {
    assert_eq!(body.pop(), Some(b']'), "a JSON array");
    body.resize(len - 1, b' ');
    body.push(b']');
    assert_eq!(body.len(), len);
}

/// Runs a client against a server whose first response is `response` followed by `then`, and
/// checks that the session fails: the client never opens, and a new session starts (a request
/// without a token) after the first one.
async fn fails(what: &str, response: Vec<u8>, then: Then) {
    let answer: Answer = Arc::new(move |_, head| {
        if head.contains("eventwire-session") {
            // A request of a session that got its token (a close frame the client owes).
            (ok(b"[]", true), Duration::from_millis(100), Then::Keep)
        } else {
            // Every session's first request gets the broken response.
            (response.clone(), Duration::ZERO, then)
        }
    });
    let mut fake = Fake::start(answer).await;
    let client = Client::connect(&fake.url(), options(Codec::Json)).unwrap();
    let (_, head, _) = fake.post().await;
    assert!(!head.contains("eventwire-session"), "{what}: {head}");
    // The session is abandoned: the client reconnects, and a new session starts.
    within(what, async {
        loop {
            let (_, head, _) = fake.post().await;
            if !head.contains("eventwire-session") {
                return;
            }
        }
    })
    .await;
    assert_ne!(*client.status().borrow(), Status::Open, "{what}");
    within("close", client.close()).await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_as_they_arrive() {
    // Declared too large: refused before any of it comes, although the server never sends it.
    let declared = format!(
        "HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\nContent-Length: {}\r\n\r\n",
        BODY_LIMIT + 1
    );
    // Chunks that pass the limit: refused once they do, the rest never awaited.
    let mut chunked =
        b"HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..(BODY_LIMIT / 4096 + 1) {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b' '; 4096]);
        chunked.extend_from_slice(b"\r\n");
    }
    // Framed by the end of the connection, which never comes.
    let mut open_ended = b"HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\n\r\n".to_vec();
    open_ended.extend_from_slice(&vec![b' '; BODY_LIMIT + 1]);
    for (what, response) in [
        ("declared", declared.into_bytes()),
        ("chunked", chunked),
        ("open-ended", open_ended),
    ] {
        let answer: Answer = {
            let response = response.clone();
            Arc::new(move |_, _| (response.clone(), Duration::ZERO, Then::Stall))
        };
        let mut fake = Fake::start(answer).await;
        let client = Client::connect(&fake.url(), options(Codec::Json)).unwrap();
        let (conn, _, _) = fake.post().await;
        // The client closes the stalled connection itself, long before any timer of its own
        // (the connect timeout is 10 s, a request's 60 s) could.
        let closed = tokio::time::timeout(
            Duration::from_secs(2),
            fake.expect("the client to close it", |s| match s {
                Seen::Closed(c) if c == conn => Some(()),
                _ => None,
            }),
        )
        .await;
        assert!(closed.is_ok(), "{what}: the body was awaited");
        assert_ne!(*client.status().borrow(), Status::Open, "{what}");
        within("close", client.close()).await;
    }
}

#[tokio::test]
async fn malformed_responses_fail_the_session() {
    fails(
        "a cut body",
        b"HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\nContent-Length: 40\r\n\r\n[]".to_vec(),
        Then::Close,
    )
    .await;
    fails("not HTTP", b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(), Then::Close).await;
    fails("no response", Vec::new(), Then::Close).await;
    fails(
        "a refusal",
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnope".to_vec(),
        Then::Close,
    )
    .await;
    fails(
        "no token",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]".to_vec(),
        Then::Keep,
    )
    .await;
    fails("a body that is no JSON array", ok(b"{}", true), Then::Keep).await;
}

/// A response with the welcome whose head is padded to about `head` bytes, in a few long
/// headers (so that the size counts, not the number of headers).
fn padded_head(head: usize) -> Vec<u8> {
    let body = welcome(Codec::Json);
    let mut response = b"HTTP/1.1 200 OK\r\nEventwire-Session: s1\r\n".to_vec();
    while response.len() + 1024 < head {
        response.extend_from_slice(b"X-Pad: ");
        response.extend_from_slice(&[b'x'; 1013]);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    response.extend_from_slice(&body);
    response
}

#[tokio::test]
async fn heads_are_limited_to_8_kib() {
    // Under the limit: read.
    let mut fake = Fake::start(first_then_empty(
        Codec::Json,
        padded_head(7 * 1024),
        Then::Keep,
    ))
    .await;
    let client = Client::connect(&fake.url(), options(Codec::Json)).unwrap();
    fake.post().await;
    open(&client).await;
    within("close", client.close()).await;
    // Over it: the session fails.
    fails("a head over 8 KiB", padded_head(11 * 1024), Then::Close).await;
}

#[tokio::test]
async fn a_refused_connection_fails_the_session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::connect(&url, options(Codec::Json)).unwrap();
    let mut status = client.status();
    let mut transport = client.transport();
    within(
        "a polling session",
        transport.wait_for(|t| *t == Transport::Polling),
    )
    .await
    .unwrap();
    // Upgrades and polling sessions alike fail, and the client keeps trying.
    within(
        "a few failed attempts",
        status.wait_for(|s| matches!(s, Status::Reconnecting { attempt, .. } if *attempt >= 4)),
    )
    .await
    .unwrap();
    within("close", client.close()).await;
}

#[tokio::test]
async fn a_kept_connection_carries_the_next_request_and_a_closed_one_costs_nothing() {
    // Each connection carries two requests; then the server closes it while the client waits.
    let served = Arc::new(AtomicUsize::new(0));
    let answer: Answer = Arc::new(move |n, _| {
        if n == 0 {
            return (ok(&welcome(Codec::Json), true), Duration::ZERO, Then::Keep);
        }
        let hold = Duration::from_millis(50);
        if served.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
            (ok(b"[]", true), hold, Then::Keep)
        } else {
            (ok(b"[]", true), hold, Then::Close)
        }
    });
    let mut fake = Fake::start(answer).await;
    let client = Client::connect(&fake.url(), options(Codec::Json)).unwrap();
    let (first, head, _) = fake.post().await;
    assert!(!head.contains("eventwire-session"));
    open(&client).await;
    let mut conns = vec![first];
    for _ in 0..8 {
        let (conn, head, _) = fake.post().await;
        // One session throughout: every later request carries its token.
        assert!(head.contains("\r\neventwire-session: s1\r\n"), "{head}");
        conns.push(conn);
    }
    assert_eq!(*client.status().borrow(), Status::Open);
    let reused = conns.windows(2).filter(|w| w[0] == w[1]).count();
    assert!(reused >= 3, "requests on a kept connection: {conns:?}");
    let connections = fake.connections.load(Ordering::SeqCst);
    // One refused upgrade, then at most one new connection per two requests (and a spare).
    assert!(
        connections <= 1 + 9 / 2 + 2,
        "{connections} connections: {conns:?}"
    );
    within("close", client.close()).await;
}
