//! Hand-written HTTP/1.1 requests and their replies, for the tests of the standalone server's
//! HTTP side (`polling.rs`, `http.rs`). Each test crate uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;

use eventwire_tokio::core::codec::stream::StreamDecoder;
use eventwire_tokio::core::codec::Codec;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const JSON: &str = "application/json";
pub const BINARY: &str = "application/octet-stream";

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn token(&self) -> String {
        self.header("eventwire-session")
            .expect("a session token")
            .to_owned()
    }

    /// The frames of a 200 reply, as JSON values (binary ones converted).
    pub fn frames(&self) -> Vec<Value> {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        if self.header("content-type") == Some(JSON) {
            serde_json::from_slice(&self.body).unwrap()
        } else {
            let mut decoder = Box::new(StreamDecoder::<{ 70 * 1024 }>::new());
            let mut frames = Vec::new();
            let mut input = &self.body[..];
            while !input.is_empty() {
                let (frame, rest) = decoder.feed(input);
                input = rest;
                if let Some(frame) = frame {
                    let mut text = Vec::new();
                    Codec::Json.encode_into(&frame.unwrap(), &mut text).unwrap();
                    frames.push(serde_json::from_slice(&text).unwrap());
                }
            }
            frames
        }
    }
}

/// The frame kinds in a reply, in order.
pub fn kinds(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

/// Sends raw request bytes on a new connection and reads one reply.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut conn = Conn::open(addr).await;
    conn.send(request).await
}

/// One client connection, for several requests in turn (keep-alive).
pub struct Conn {
    pub socket: TcpStream,
    /// Bytes read past the last reply.
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        Conn {
            socket: TcpStream::connect(addr).await.unwrap(),
            buf: Vec::new(),
        }
    }

    /// Sends raw request bytes and reads the reply.
    pub async fn send(&mut self, request: &[u8]) -> Reply {
        self.socket.write_all(request).await.unwrap();
        self.reply(request.starts_with(b"HEAD ")).await
    }

    /// Reads one reply: its head, then the `Content-Length` bytes of its body (none after a
    /// `HEAD` request, a 1xx, 204 or 304).
    pub async fn reply(&mut self, to_head: bool) -> Reply {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
        };
        if to_head || status < 200 || status == 204 || status == 304 {
            return reply;
        }
        let length: usize = reply
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        while self.buf.len() < length {
            self.fill().await;
        }
        reply.body = self.buf.drain(..length).collect();
        reply
    }

    /// The next `n` bytes after the last reply (WebSocket frames after a 101, say).
    pub async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill().await;
        }
        self.buf.drain(..n).collect()
    }

    /// Whether the server closed the connection (end of stream or reset) with nothing more sent.
    pub async fn closed(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        match self.socket.read(&mut chunk).await {
            Ok(0) | Err(_) => self.buf.is_empty(),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.socket.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed mid-reply");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

/// A polling request with `body` (frames already in `content_type`'s form).
pub async fn post(addr: SocketAddr, content_type: &str, token: Option<&str>, body: &[u8]) -> Reply {
    post_to(addr, "/eventwire/poll", content_type, token, body).await
}

pub async fn post_to(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: &[u8],
) -> Reply {
    raw(addr, &post_request(path, content_type, token, body, false)).await
}

/// The last request number of each session token the tests' requests used (`Eventwire-Seq`).
static SEQS: std::sync::Mutex<std::collections::BTreeMap<String, u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The bytes of a polling request; `keep_alive: false` asks the server to close after it. A
/// request with a token carries the session's next number (from 2: the first request, without
/// a token, is 1).
pub fn post_request(
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    // Numbered as a client numbers them: the session's next request, in the order built.
    let seq = token.map(|token| {
        let mut seqs = SEQS.lock().unwrap();
        let seq = seqs.entry(token.to_owned()).or_insert(1);
        *seq += 1;
        *seq
    });
    numbered_request(path, content_type, token, seq, body, keep_alive)
}

/// The bytes of a polling request with the request number `seq` (`Eventwire-Seq`) as given.
pub fn numbered_request(
    path: &str,
    content_type: &str,
    token: Option<&str>,
    seq: Option<u64>,
    body: &[u8],
    keep_alive: bool,
) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !keep_alive {
        request.push_str("Connection: close\r\n");
    }
    if let Some(token) = token {
        request.push_str(&format!("Eventwire-Session: {token}\r\n"));
    }
    if let Some(seq) = seq {
        request.push_str(&format!("Eventwire-Seq: {seq}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
