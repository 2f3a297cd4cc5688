//! HTTP/1.1 framing for the API socket: requests parsed with `httparse`,
//! bodies by `Content-Length` only (no chunked encoding, as Firecracker),
//! `Expect: 100-continue`, keep-alive; and the few responses the API sends.
//!
//! Everything here is client input: the head and the body are bounded, and a
//! request that breaks a rule is an [`HttpError`] naming the rule.

/// Most headers a request may carry.
pub const MAX_HEADERS: usize = 32;
/// Largest request head (request line and headers), in bytes.
pub const MAX_HEAD_LEN: usize = 8192;
/// Firecracker's default `--http-api-max-payload-size`.
pub const DEFAULT_MAX_PAYLOAD: usize = 51200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("Malformed HTTP request: {0}.")]
    Malformed(String),
    #[error("The request head is larger than {MAX_HEAD_LEN} bytes.")]
    HeadTooLarge,
    #[error(
        "Request payload with size {len} is larger than the limit of {limit} allowed by server."
    )]
    PayloadTooLarge { len: usize, limit: usize },
    #[error("Transfer-Encoding {0:?} is not supported; send the body with Content-Length.")]
    TransferEncoding(String),
    #[error("Invalid Content-Length {0:?}.")]
    ContentLength(String),
    #[error("Unsupported HTTP version 1.{0}.")]
    Version(u8),
}

/// One complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// What the bytes received so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; `send_continue` when the client waits for a
    /// `100 Continue` before sending its body.
    Incomplete { send_continue: bool },
    /// A request, and how many bytes of the buffer it took.
    Complete { request: Request, consumed: usize },
}

fn header_str<'a>(h: &httparse::Header<'a>) -> Result<&'a str, HttpError> {
    std::str::from_utf8(h.value)
        .map(str::trim)
        .map_err(|_| HttpError::Malformed(format!("header {} is not UTF-8", h.name)))
}

/// Parses the request at the start of `buf`. `continue_sent` says whether a
/// `100 Continue` was already sent for it.
pub fn parse(buf: &[u8], max_payload: usize, continue_sent: bool) -> Result<Parsed, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD_LEN {
                return Err(HttpError::HeadTooLarge);
            }
            return Ok(Parsed::Incomplete {
                send_continue: false,
            });
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::Malformed(format!(
                "more than {MAX_HEADERS} headers"
            )))
        }
        Err(e) => return Err(HttpError::Malformed(e.to_string())),
    };
    if head_len > MAX_HEAD_LEN {
        return Err(HttpError::HeadTooLarge);
    }
    let version = req.version.unwrap_or(1);
    if version > 1 {
        return Err(HttpError::Version(version));
    }
    let mut content_length: Option<usize> = None;
    let mut expect_continue = false;
    let mut keep_alive = version == 1;
    for h in req.headers.iter() {
        let value = header_str(h)?;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| HttpError::ContentLength(value.to_string()))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HttpError::ContentLength(value.to_string()));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpError::TransferEncoding(value.to_string()));
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    let len = content_length.unwrap_or(0);
    if len > max_payload {
        return Err(HttpError::PayloadTooLarge {
            len,
            limit: max_payload,
        });
    }
    let total = head_len + len;
    if buf.len() < total {
        return Ok(Parsed::Incomplete {
            send_continue: expect_continue && !continue_sent,
        });
    }
    let method = req.method.unwrap_or_default().to_string();
    let path = req.path.unwrap_or_default().to_string();
    Ok(Parsed::Complete {
        request: Request {
            method,
            path,
            body: buf[head_len..total].to_vec(),
            keep_alive,
        },
        consumed: total,
    })
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response: a status and, for 200 and errors, a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Option<String>,
    /// Adds Firecracker's `Deprecation: true` header.
    pub deprecation: bool,
}

impl Response {
    pub fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            deprecation: false,
        }
    }

    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body: Some(body),
            deprecation: false,
        }
    }

    /// Firecracker's error body: `{"fault_message": "..."}`.
    pub fn fault(status: u16, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({ "fault_message": message }).to_string(),
        )
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        }
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: Caisson API\r\nConnection: {}\r\n",
            self.status,
            self.reason(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        let body = self.body.as_deref().unwrap_or("");
        if self.deprecation {
            head.push_str("Deprecation: true\r\n");
        }
        if self.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        if self.status != 204 {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> (Request, usize) {
        match parse(bytes, DEFAULT_MAX_PAYLOAD, false) {
            Ok(Parsed::Complete { request, consumed }) => (request, consumed),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn requests_with_and_without_bodies() {
        let (r, n) = complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!((r.method.as_str(), r.path.as_str(), n), ("GET", "/", 27));
        assert!(r.keep_alive && r.body.is_empty());
        let two = b"PUT /vm HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}GET / HTTP/1.0\r\n\r\n";
        let (r, n) = complete(two);
        assert_eq!(r.body, b"{}");
        let (r2, _) = complete(&two[n..]);
        assert!(!r2.keep_alive, "HTTP/1.0 closes by default");
        let (r, _) = complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!r.keep_alive);
    }

    #[test]
    fn partial_requests_wait_and_100_continue_is_asked_once() {
        assert_eq!(
            parse(b"GET / HT", 100, false),
            Ok(Parsed::Incomplete {
                send_continue: false
            })
        );
        let head = b"PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
        assert_eq!(
            parse(head, 100, false),
            Ok(Parsed::Incomplete {
                send_continue: true
            })
        );
        assert_eq!(
            parse(head, 100, true),
            Ok(Parsed::Incomplete {
                send_continue: false
            })
        );
    }

    #[test]
    fn bad_requests_are_named() {
        let too_big = b"PUT /x HTTP/1.1\r\nContent-Length: 51201\r\n\r\n";
        assert_eq!(
            parse(too_big, DEFAULT_MAX_PAYLOAD, false),
            Err(HttpError::PayloadTooLarge {
                len: 51201,
                limit: DEFAULT_MAX_PAYLOAD
            })
        );
        let chunked = b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse(chunked, 100, false),
            Err(HttpError::TransferEncoding(_))
        ));
        let bad_len = b"PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(
            parse(bad_len, 100, false),
            Err(HttpError::ContentLength(_))
        ));
        let two_lens = b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert!(matches!(
            parse(two_lens, 100, false),
            Err(HttpError::ContentLength(_))
        ));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n", 100, false),
            Err(HttpError::Malformed(_))
        ));
        let long = vec![b'a'; MAX_HEAD_LEN + 1];
        assert_eq!(parse(&long, 100, false), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn responses_carry_length_and_json() {
        let r = Response::fault(400, "bad \"x\"");
        let text = String::from_utf8(r.to_bytes(true)).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.ends_with(r#"{"fault_message":"bad \"x\""}"#), "{text}");
        let body_len = r.body.as_ref().map(String::len).unwrap_or(0);
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));
        let nc = String::from_utf8(Response::no_content().to_bytes(false)).expect("utf8");
        assert!(nc.starts_with("HTTP/1.1 204 No Content\r\n") && !nc.contains("Content-Length"));
        assert!(nc.contains("Connection: close"));
    }
}
