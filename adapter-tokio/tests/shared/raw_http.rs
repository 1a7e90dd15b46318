//! Hand-written HTTP/1.1 requests and their replies, for the tests of the standalone server's
//! HTTP side (`poll.rs`, `http.rs`). Each test crate uses a part of it.
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

/// Sends raw request bytes and reads the whole reply (the server closes after it).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    socket.read_to_end(&mut bytes).await.unwrap();
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
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
    let body = bytes[end + 4..].to_vec();
    let reply = Reply {
        status,
        headers,
        body,
    };
    let length: usize = reply.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, reply.body.len());
    reply
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
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Eventwire-Session: {token}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes).await
}
