use std::sync::mpsc::channel;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn parse(line: &str) -> Value {
    serde_json::from_str(line).expect("a JSON object")
}

#[test]
fn a_line_has_the_timestamp_every_group_and_the_extra_groups() {
    let m = CaissonMetrics::new();
    m.vcpu.exit_io_out.add(3);
    m.i8042.reset_count.inc();
    let extra = vec![
        ("block".to_string(), json!({"read_count": 7})),
        ("block_rootfs".to_string(), json!({"read_count": 7})),
    ];
    let text = m.line(&extra).expect("line");
    assert!(!text.contains('\n'));
    assert!(text.starts_with("{\"utc_timestamp_ms\":"), "{text}");
    let v = parse(&text);
    let o = v.as_object().expect("object");
    assert_eq!(o.len(), 1 + GROUPS.len() + 2);
    for g in GROUPS {
        assert!(o[g].is_object(), "{g}");
    }
    let now = utc_timestamp_ms();
    let ts = v["utc_timestamp_ms"].as_u64().expect("a number");
    assert!(ts <= now && now - ts < 60_000, "{ts} vs {now}");
    assert_eq!(v["vcpu"]["exit_io_out"], 3);
    assert_eq!(v["i8042"]["reset_count"], 1);
    assert_eq!(v["block_rootfs"]["read_count"], 7);
    // Per interval: the next line starts from zero.
    let v = parse(&m.line(&[]).expect("line"));
    assert_eq!(v["vcpu"]["exit_io_out"], 0);
    assert_eq!(v["i8042"]["reset_count"], 0);
    assert!(v.get("block").is_none());
}

#[test]
fn extra_groups_may_not_shadow_others() {
    let m = CaissonMetrics::new();
    for bad in [
        vec![("vsock".to_string(), json!({}))],
        vec![("utc_timestamp_ms".to_string(), json!(1))],
        vec![
            ("net".to_string(), json!({})),
            ("net".to_string(), json!({})),
        ],
    ] {
        let err = m.line(&bad).expect_err("duplicate");
        assert!(matches!(err, MetricsError::DuplicateGroup(_)), "{err}");
    }
}

#[test]
fn store_metrics_keep_their_value_across_lines() {
    let m = CaissonMetrics::new();
    m.signals.sighup.store(1);
    for _ in 0..2 {
        assert_eq!(parse(&m.line(&[]).expect("line"))["signals"]["sighup"], 1);
    }
}

#[test]
fn a_file_sink_gets_one_line_per_flush_and_is_initialised_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.json");
    std::fs::write(&path, "earlier\n").expect("write");
    let m = CaissonMetrics::new();
    let sink = Sink::new();
    assert!(!sink.flush(&m, Vec::new).expect("no sink"));
    m.uart.write_count.add(5);
    sink.init(&path).expect("init");
    let err = sink
        .init(&dir.path().join("other"))
        .expect_err("second init");
    assert_eq!(err.to_string(), "Reinitialization of metrics not allowed.");
    assert!(!dir.path().join("other").exists());
    assert!(sink.flush(&m, Vec::new).expect("flush"));
    assert!(sink
        .flush(&m, || vec![("entropy".into(), json!({"entropy_bytes": 2}))])
        .expect("flush"));
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "earlier", "appended, not overwritten");
    // The counts before init were kept for the first line.
    assert_eq!(parse(lines[1])["uart"]["write_count"], 5);
    assert_eq!(parse(lines[2])["uart"]["write_count"], 0);
    assert_eq!(parse(lines[2])["entropy"]["entropy_bytes"], 2);
}

#[test]
fn a_bad_path_is_named() {
    let sink = Sink::new();
    let err = sink
        .init(Path::new("/nonexistent-dir/metrics.json"))
        .expect_err("no such directory");
    assert!(
        err.to_string().contains("/nonexistent-dir/metrics.json"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(sink.init(dir.path()).is_err(), "a directory");
}

#[test]
fn a_fifo_nobody_reads_never_blocks_and_keeps_lines_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let (tx, rx) = channel();
    let p = path.clone();
    // In a thread, so that a blocking open or write fails the test instead of
    // hanging it. The sink comes back: closing it would discard the pipe's data.
    std::thread::spawn(move || {
        let m = CaissonMetrics::new();
        let sink = Sink::new();
        let r = sink.init(&p).map(|()| {
            let (mut written, mut full) = (0u64, 0u64);
            // A pipe holds 64 KiB: a few hundred lines fill it many times over.
            for _ in 0..400 {
                m.vcpu.exit_io_out.inc();
                match sink.flush(&m, Vec::new) {
                    Ok(true) => written += 1,
                    Err(MetricsError::Full { .. }) => full += 1,
                    other => return Err(format!("unexpected {other:?}")),
                }
            }
            Ok((written, full))
        });
        let _ = tx.send((r, sink, m));
    });
    let (r, sink, m) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("opening and flushing return");
    let (written, full) = r.expect("init").expect("flushes");
    assert!(written > 0 && full > 0, "{written} written, {full} full");
    assert_eq!(m.logger.missed_metrics_count.total(), full);
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .expect("open the FIFO");
    let mut text = Vec::new();
    // Non-blocking: stops with EAGAIN once the pipe is empty.
    let _ = std::io::Read::read_to_end(&mut reader, &mut text);
    // Now there is room: the waiting rest of a line goes first, then a new line
    // with the counts of every skipped flush.
    assert!(sink.flush(&m, Vec::new).expect("flush"));
    let _ = std::io::Read::read_to_end(&mut reader, &mut text);
    let text = String::from_utf8(text).expect("UTF-8");
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text.lines().map(parse).collect();
    assert_eq!(lines.len() as u64, written + 1);
    let sum: u64 = lines
        .iter()
        .map(|v| v["vcpu"]["exit_io_out"].as_u64().expect("a count"))
        .sum();
    assert_eq!(sum, 400, "no count was lost to a full pipe");
    assert_eq!(lines[1]["logger"]["missed_metrics_count"], 0);
    let missed: u64 = lines
        .iter()
        .map(|v| {
            v["logger"]["missed_metrics_count"]
                .as_u64()
                .expect("a count")
        })
        .sum();
    assert_eq!(missed, full);
}

#[test]
fn the_signal_handler_line_is_whole_and_skipped_while_the_sink_is_busy() {
    // The global sink: this is the only test that initialises it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("metrics.json");
    init(&path).expect("init");
    METRICS.seccomp.num_faults.store(1);
    {
        let _busy = SINK.out.get().expect("sink").lock().expect("lock");
        flush_in_signal_handler();
    }
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
    flush_in_signal_handler();
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 1);
    assert!(text.ends_with('\n'));
    let v = parse(text.trim_end());
    assert_eq!(v["seccomp"]["num_faults"], 1);
    for g in GROUPS {
        assert!(v[g].is_object(), "{g}");
    }
}

/// The devices count into the global [`METRICS`], which other tests move too:
/// only increases are checked.
#[test]
fn legacy_devices_count_their_accesses() {
    use crate::devices::bus::BusDevice;
    use vmm_sys_util::eventfd::EventFd;

    let uart = &METRICS.uart;
    let before = (
        uart.write_count.total(),
        uart.missed_read_count.total(),
        uart.missed_write_count.total(),
    );
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    let drained = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    let mut serial =
        crate::devices::serial::SerialDevice::new(irq, drained, Box::new(std::io::sink()));
    for b in b"abc" {
        serial.write(0, &[*b]);
    }
    serial.write(0, &[1, 2]);
    serial.read(5, &mut [0u8; 2]);
    assert!(uart.write_count.total() >= before.0 + 3);
    assert!(uart.missed_read_count.total() > before.1);
    assert!(uart.missed_write_count.total() > before.2);

    let kbd = &METRICS.i8042;
    let before = (
        kbd.reset_count.total(),
        kbd.missed_write_count.total(),
        kbd.read_count.total(),
    );
    let exit = std::sync::Arc::new(crate::exit::ExitSignal::new().expect("exit signal"));
    let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
    let mut i8042 = crate::devices::i8042::I8042::new(exit.clone(), irq);
    i8042.read(4, &mut [0u8]);
    i8042.write(4, &[0xfe, 0xfe]);
    i8042.write(4, &[0xfe]);
    assert!(exit.reason().is_some());
    assert!(kbd.reset_count.total() > before.0);
    assert!(kbd.missed_write_count.total() > before.1);
    assert!(kbd.read_count.total() > before.2);
}
