//! The API socket's HTTP framing: the input is one connection's bytes (after a
//! 2-byte prefix picking the payload limit and whether a `100 Continue` was
//! sent). Requests are taken off the front as the server does; each complete
//! one goes through the router. Nothing may panic, a complete request must stay
//! inside the buffer and the limit, a shorter prefix must not already be
//! complete, and every error must make a valid HTTP response.
#![no_main]

use caisson::api::http::{parse, Parsed, Response};
use caisson::api::routes;
use libfuzzer_sys::fuzz_target;

const LIMITS: [usize; 6] = [0, 1, 16, 100, 4096, 51200];
/// Pipelined requests looked at per input (bounds the time per run).
const MAX_REQUESTS: usize = 64;

/// The bytes must parse as one complete HTTP/1.1 response.
fn check_response(bytes: &[u8]) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => {
            let len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            assert_eq!(n + len, bytes.len(), "response length");
        }
        other => panic!(
            "invalid response {other:?}: {:?}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let [pick, flags, rest @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(*pick) % LIMITS.len()];
    let mut continue_sent = flags & 1 != 0;
    let mut buf = rest;
    for _ in 0..MAX_REQUESTS {
        match parse(buf, limit, continue_sent) {
            Ok(Parsed::Incomplete { send_continue }) => {
                assert!(
                    !(send_continue && continue_sent),
                    "100 Continue asked twice"
                );
                return;
            }
            Ok(Parsed::Complete { request, consumed }) => {
                assert!(consumed > 0 && consumed <= buf.len());
                assert!(request.body.len() <= limit, "body over the limit");
                assert_eq!(
                    &buf[consumed - request.body.len()..consumed],
                    &request.body[..]
                );
                // The same request, whatever the read boundaries were.
                assert!(
                    !matches!(
                        parse(&buf[..consumed - 1], limit, continue_sent),
                        Ok(Parsed::Complete { .. })
                    ),
                    "a prefix of a request is complete"
                );
                match parse(&buf[..consumed], limit, continue_sent) {
                    Ok(Parsed::Complete {
                        request: again,
                        consumed: n,
                    }) => {
                        assert_eq!((again, n), (request.clone(), consumed));
                    }
                    other => panic!("the request alone parses as {other:?}"),
                }
                let response = match routes::parse(&request.method, &request.path, &request.body) {
                    Ok(routed) => {
                        let mut r = Response::no_content();
                        r.deprecation = routed.deprecation.is_some();
                        r
                    }
                    Err(fault) => {
                        assert!(!fault.is_empty());
                        Response::fault(400, &fault)
                    }
                };
                check_response(&response.to_bytes(request.keep_alive));
                buf = &buf[consumed..];
                continue_sent = false;
            }
            Err(e) => {
                check_response(&Response::fault(400, &e.to_string()).to_bytes(false));
                return;
            }
        }
    }
});
