//! The integration tests' HTTP client over a unix socket (`common::http_unix`),
//! checked against a server that answers as Firecracker's does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;

/// The test's HTTP client against a server answering as Firecracker's micro_http
/// does (keep-alive, Content-Length), so that the tests driving the jailed API
/// (firecracker_mode.rs, snapshots_vmm.rs) fail only for the VMM's sake.
#[test]
fn the_http_client_reads_a_keep_alive_response_and_sends_bodies() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = std::env::temp_dir().join(format!("caisson-jailer-http-{}", unique_id("http")));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("api.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for body in [r#"{"id":"vm1","state":"Running"}"#, ""] {
            let (stream, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&stream);
            let mut head = Vec::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let mut req_body = vec![0u8; length];
            r.read_exact(&mut req_body).unwrap();
            requests.push((head, String::from_utf8(req_body).unwrap()));
            let status = if body.is_empty() { "204" } else { "200" };
            write!(
                &stream,
                "HTTP/1.1 {status} \r\nServer: Firecracker API\r\nConnection: keep-alive\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            // Keep the connection open: the client must stop at Content-Length.
            std::thread::sleep(Duration::from_millis(200));
        }
        requests
    });
    let (code, body) = http_unix(&sock, "GET", "/", None).unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"id":"vm1","state":"Running"}"#)
    );
    let patch = r#"{"drive_id":"drive_0","path_on_host":"/drive_0"}"#;
    let (code, body) = http_unix(&sock, "PATCH", "/drives/drive_0", Some(patch)).unwrap();
    assert_eq!((code, body.as_str()), (204, ""));
    let requests = server.join().unwrap();
    assert_eq!(requests[0].0[0], "GET / HTTP/1.1");
    assert_eq!(requests[1].0[0], "PATCH /drives/drive_0 HTTP/1.1");
    assert_eq!(requests[1].1, patch);
    std::fs::remove_dir_all(&dir).unwrap();
}
