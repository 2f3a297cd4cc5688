//! Hostile and clumsy HTTP clients: each gets its answer (or a closed
//! connection) and the VM runs on.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::common::http::{once, request_bytes, Client, Vmm};
use super::{boot_source_body, running_demo, NOT_AFTER_BOOT};

/// Sends `bytes` on a fresh connection; expects a 400 naming `part`, then a
/// closed connection.
fn expect_400_and_close(v: &Vmm, bytes: &[u8], part: &str) {
    let mut c = v.client();
    c.send_raw(bytes).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(bytes));
    assert!(r.fault().contains(part), "want {part:?}: {r:?}");
    assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    assert!(c.closed_by_server(), "connection left open after {r:?}");
}

#[test]
fn malformed_http_gets_400_and_the_vm_runs_on() {
    let mut v = running_demo("malformed", &[]);
    expect_400_and_close(&v, b"\x00\x01garbage\r\n\r\n", "Malformed HTTP request");
    expect_400_and_close(
        &v,
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "Malformed HTTP request",
    );
    expect_400_and_close(
        &v,
        b"PUT /vm HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "Invalid Content-Length",
    );
    expect_400_and_close(
        &v,
        b"PUT /vm HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        "Invalid Content-Length",
    );
    let mut huge = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 9000));
    expect_400_and_close(&v, &huge, "larger than 8192 bytes");
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect_400_and_close(
        &v,
        format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(),
        "Malformed HTTP request",
    );
    v.assert_serving("Running");
}

#[test]
fn chunked_bodies_are_refused() {
    let mut v = running_demo("chunked", &[]);
    expect_400_and_close(
        &v,
        b"PUT /vm HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"state\": \"Paused\"}\r\n0\r\n\r\n",
        "Transfer-Encoding",
    );
    v.assert_serving("Running");
}

#[test]
fn bodies_over_the_default_limit_are_refused() {
    let mut v = running_demo("bigbody", &[]);
    // The head alone announces too much: refused before any body byte.
    expect_400_and_close(
        &v,
        b"PUT /machine-config HTTP/1.1\r\nContent-Length: 51201\r\n\r\n",
        "Request payload with size 51201 is larger than the limit of 51200",
    );
    // A client that sends the whole body anyway gets the same answer.
    let body = format!(
        "{{\"vcpu_count\": 1, \"mem_size_mib\": 64{}}}",
        " ".repeat(60_000)
    );
    let mut c = v.client();
    let bytes = request_bytes("PUT", "/machine-config", Some(&body), &[]);
    // The server may close before it has read everything: a broken pipe is fine.
    let _ = c.send_raw(&bytes);
    let r = c.read_response().unwrap();
    r.assert_fault_contains("larger than the limit of 51200");
    // Exactly at the limit passes the HTTP layer (then the post-boot rule refuses).
    let body = r#"{"vcpu_count": 1, "mem_size_mib": 64}"#;
    let padded = format!("{body}{}", " ".repeat(51200 - body.len()));
    once(&v.sock, "PUT", "/machine-config", Some(&padded)).assert_fault(NOT_AFTER_BOOT);
    v.assert_serving("Running");
}

#[test]
fn a_small_max_payload_size_is_enforced() {
    let mut v = running_demo("smallbody", &["--http-api-max-payload-size", "100"]);
    let body = r#"{"vcpu_count": 1, "mem_size_mib": 64}"#;
    let at_limit = format!("{body}{}", " ".repeat(100 - body.len()));
    once(&v.sock, "PUT", "/machine-config", Some(&at_limit)).assert_fault(NOT_AFTER_BOOT);
    let over = format!("{at_limit} ");
    let r = once(&v.sock, "PUT", "/machine-config", Some(&over));
    r.assert_fault(
        "Request payload with size 101 is larger than the limit of 100 allowed by server.",
    );
    v.assert_serving("Running");
}

#[test]
fn a_slow_client_does_not_hold_up_others() {
    let mut v = running_demo("slow", &[]);
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let (half_tx, half_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let mut slow = v.client();
    let slow_thread = std::thread::spawn(move || {
        let (half, rest) = request.split_at(request.len() / 2);
        for b in half {
            slow.send_raw(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        half_tx.send(()).unwrap();
        // Stall mid-request until the others were served.
        go_rx.recv().unwrap();
        for b in rest {
            slow.send_raw(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        slow.read_response().unwrap()
    });
    half_rx.recv().unwrap();
    // Served while the slow request is half-written (each within the 5 s read
    // timeout: the server does not wait for the slow one).
    for _ in 0..5 {
        let r = once(&v.sock, "GET", "/", None);
        assert_eq!(r.json()["state"], "Running", "{r:?}");
    }
    go_tx.send(()).unwrap();
    let r = slow_thread.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "Running", "{r:?}");
    v.assert_serving("Running");
}

#[test]
fn an_eleventh_connection_is_refused_until_one_closes() {
    let mut v = running_demo("conns", &[]);
    // Ten connections, each proven accepted by an answered request.
    let mut open: Vec<Client> = (0..10)
        .map(|i| {
            let mut c = v.client();
            let r = c.get("/");
            assert_eq!(r.status, 200, "connection {i}: {r:?}");
            c
        })
        .collect();
    let mut eleventh = v.client();
    match eleventh.read_response() {
        Ok(r) => {
            assert_eq!(r.status, 503, "{r:?}");
            assert_eq!(r.fault(), "Too many open connections.", "{r:?}");
        }
        Err(e) => eprintln!("the 11th connection was closed without an answer: {e}"),
    }
    assert!(
        eleventh.closed_by_server(),
        "the 11th connection stayed open"
    );
    // Once one closes, a new connection is served (the server notices the close
    // asynchronously: retry briefly).
    drop(open.remove(0));
    let mut served = None;
    for _ in 0..300 {
        let mut c = v.client();
        match c.request("GET", "/", None) {
            Ok(r) if r.status == 200 => {
                served = Some(c);
                break;
            }
            Ok(r) => assert_eq!(r.status, 503, "{r:?}"),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let served = served.expect("no connection was served after one closed");
    // The nine old ones still work.
    for (i, c) in open.iter_mut().enumerate() {
        assert_eq!(c.get("/").status, 200, "old connection {i}");
    }
    drop(open);
    drop(served);
    assert!(v.alive());
    v.wait_state("Running", Duration::from_secs(3));
}

#[test]
fn clients_that_disconnect_mid_request_are_forgotten() {
    let mut v = running_demo("hangup", &[]);
    let parts: [&[u8]; 4] = [
        b"GET / HT",
        b"PUT /machine-config HTTP/1.1\r\nContent-Length: 50\r\n\r\n{\"vcp",
        b"PUT /machine-config HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 50\r\n\r\n",
        // A full request whose answer nobody reads.
        b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ];
    for _ in 0..5 {
        for p in parts {
            let mut s = UnixStream::connect(&v.sock).unwrap();
            s.write_all(p).unwrap();
            drop(s);
        }
    }
    // All those connections were released: ten new ones fit.
    let mut fresh = Vec::new();
    for i in 0..10 {
        let mut ok = false;
        for _ in 0..300 {
            let mut c = v.client();
            if matches!(c.request("GET", "/", None), Ok(r) if r.status == 200) {
                fresh.push(c);
                ok = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(ok, "connection {i} of 10 was never served");
    }
    drop(fresh);
    v.assert_serving("Running");
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let mut v = running_demo("continue", &[]);
    let body = "{not json";
    let head = format!(
        "PUT /boot-source HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut c = v.client();
    c.send_raw(head.as_bytes()).unwrap();
    let interim = c.read_response().unwrap();
    assert_eq!(
        (interim.status, interim.reason.as_str()),
        (100, "Continue"),
        "{interim:?}"
    );
    c.send_raw(body.as_bytes()).unwrap();
    // The body was read after the 100: the JSON error names it.
    c.read_response()
        .unwrap()
        .assert_fault_contains("key must be a string");
    // Same connection, a second expect-continue request, now a valid body.
    let body = boot_source_body("hello", "console=ttyS0");
    let head = format!(
        "PUT /boot-source HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send_raw(head.as_bytes()).unwrap();
    assert_eq!(c.read_response().unwrap().status, 100);
    c.send_raw(body.as_bytes()).unwrap();
    c.read_response().unwrap().assert_fault(NOT_AFTER_BOOT);
    // On the wire, exactly Firecracker's interim line.
    let mut raw = UnixStream::connect(&v.sock).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(b"PUT /vm HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 25];
    std::io::Read::read_exact(&mut raw, &mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 100 Continue\r\n\r\n");
    drop(raw);
    v.assert_serving("Running");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let mut v = running_demo("keepalive", &[]);
    let mut c = v.client();
    let a = c.get("/");
    assert_eq!(a.header("Connection"), Some("keep-alive"), "{a:?}");
    let b = c.get("/version");
    assert_eq!(b.json()["firecracker_version"], env!("CARGO_PKG_VERSION"));
    // Pipelined: two requests in one write, two answers in order.
    let mut both = request_bytes("GET", "/machine-config", None, &[]);
    both.extend(request_bytes("PUT", "/vm", Some("{}"), &[]));
    c.send_raw(&both).unwrap();
    assert_eq!(c.read_response().unwrap().json()["vcpu_count"], 1);
    c.read_response()
        .unwrap()
        .assert_fault("Invalid request method and/or path: PUT vm.");
    // Connection: close is honoured.
    c.send_raw(&request_bytes("GET", "/", None, &["Connection: close"]))
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    assert!(
        c.closed_by_server(),
        "the server kept a Connection: close open"
    );
    v.assert_serving("Running");
}

/// glibc's malloc reads /proc/sys/vm/overcommit_memory (openat) the first time
/// a thread's heap shrinks; the API thread's filter kills the VMM for it. A
/// client that pipelines a few thousand small requests, reading the answers
/// only afterwards, grows and frees the API thread's buffers.
#[test]
fn pipelined_requests_do_not_kill_the_vmm() {
    const N: usize = 3000;
    let batch = request_bytes("GET", "/", None, &[]).repeat(N);
    // Whether a given process hits it depends on the heap's layout (which
    // arena the API thread got), so several processes try.
    for process in 0..4 {
        let mut v = Vmm::spawn("pipeline", &[]);
        // Several connections in turn: each grows the server's buffers, and
        // closing it frees them.
        for round in 0..10 {
            let mut c = v.client();
            c.send_raw(&batch).unwrap();
            for i in 0..N {
                match c.read_response() {
                    Ok(r) => assert_eq!(r.status, 200, "response {i}: {r:?}"),
                    Err(e) => panic!(
                        "process {process}, round {round}, response {i} of {N}: {e}; stderr: {}",
                        v.stderr()
                    ),
                }
            }
        }
        v.assert_serving("Not started");
    }
}

/// A client that sends requests but never reads the answers must not make the
/// VMM buffer answers without bound.
#[test]
fn a_client_that_never_reads_cannot_grow_the_vmm_without_bound() {
    // Without seccomp: the heap-shrink kill above would end this test early.
    let mut v = running_demo("noread", &["--no-seccomp"]);
    let rss_kib = |pid: i32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|l| l.trim().strip_suffix("kB"))
            .map(|n| n.trim().parse().unwrap())
            .unwrap()
    };
    let before = rss_kib(v.pid());
    let mut c = v.client();
    // 200 000 requests of 61 bytes; each answer is about 190 bytes. A server that
    // stops reading while answers are pending blocks these writes instead (the
    // write timeout then ends the loop).
    let batch = request_bytes("GET", "/", None, &[]).repeat(1000);
    for _ in 0..200 {
        if c.send_raw(&batch).is_err() {
            break;
        }
    }
    // Let the server work through what it has read.
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss_kib(v.pid()).saturating_sub(before);
    eprintln!("RSS grew by {grown} KiB");
    assert!(
        grown < 16 * 1024,
        "the VMM grew by {grown} KiB buffering answers nobody reads"
    );
    drop(c);
    v.assert_serving("Running");
}
