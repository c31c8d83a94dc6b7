//! The control protocol without a socket: requests parsed and answered against a real
//! store and endpoint figures.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::*;
use crate::endpoint::{Endpoint, Settings};
use crate::name::normalize_name;
use crate::store::{Preseed, UploadPolicy};

fn store() -> Arc<Store> {
    let mut preseed = Preseed::new(false);
    for (name, data) in [("pxe/a", &b"aaaa"[..]), ("pxe/b", b"bb"), ("other", b"o")] {
        let name = normalize_name(name).expect("name");
        preseed.insert(name, Bytes::copy_from_slice(data));
    }
    let policy = UploadPolicy {
        enabled: true,
        max_file_size: 1000,
        max_total_size: 10_000,
        overwrite: false,
        allow: Vec::new(),
    };
    let store = Arc::new(Store::new(preseed, policy));
    let permit =
        (store.check_upload(&normalize_name("up/x").expect("name"), None)).expect("upload allowed");
    store
        .commit_upload(permit, b"uploaded".to_vec())
        .expect("commit");
    store
}

fn ask(store: &Store, line: &str) -> Reply {
    let endpoint = Endpoint::new(
        Arc::new(Store::new(Preseed::new(false), UploadPolicy::disabled())),
        Settings::default(),
    );
    let counters = Counters {
        files: store.stats().files as u64,
        ..endpoint.counters()
    };
    let start = Instant::now();
    let daemon = DaemonInfo::new(start, SystemTime::UNIX_EPOCH);
    let view = View {
        counters: &counters,
        transfers: &[],
        store,
        daemon: &daemon,
        origin: None,
        now: start + Duration::from_secs(5),
        wall: SystemTime::now(),
    };
    handle(line.as_bytes(), &view)
}

fn answer(store: &Store, line: &str) -> (serde_json::Value, Option<Bytes>) {
    match ask(store, line) {
        Reply::Answer(answer) => {
            assert_eq!(answer.line.last(), Some(&b'\n'));
            let value = serde_json::from_slice(&answer.line).expect("JSON answer");
            (value, answer.body)
        }
        Reply::Reload => panic!("{line} asked for a reload"),
    }
}

#[test]
fn status_answers_with_version_one_and_the_figures() {
    let store = store();
    let (value, body) = answer(&store, r#"{"version":1,"command":"status"}"#);
    assert_eq!(value["version"], 1);
    assert_eq!(value["ok"], true);
    let status: StatusReport = serde_json::from_value(value["result"].clone()).expect("status");
    assert_eq!(status.store.files, 4);
    assert_eq!(status.server.uptime_seconds, 5.0);
    assert_eq!(status.server.started, "1970-01-01T00:00:00.000Z");
    assert!(status.last_reload.is_none());
    assert!(body.is_none());
}

#[test]
fn files_lists_by_prefix_and_uploads_only_the_uploads() {
    let store = store();
    let (value, _) = answer(&store, r#"{"version":1,"command":"files","prefix":"pxe/"}"#);
    let files: FilesReport = serde_json::from_value(value["result"].clone()).expect("files");
    let names: Vec<&str> = files.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["pxe/a", "pxe/b"]);
    assert_eq!(files.files[0].size, 4);
    assert!(!files.truncated);
    let (value, _) = answer(&store, r#"{"version":1,"command":"uploads"}"#);
    let files: FilesReport = serde_json::from_value(value["result"].clone()).expect("files");
    assert_eq!(files.files.len(), 1);
    assert_eq!(files.files[0].source, "upload");
}

#[test]
fn upload_get_is_a_header_and_the_bytes_and_drop_removes_it() {
    let store = store();
    let (value, body) = answer(
        &store,
        r#"{"version":1,"command":"upload-get","name":"up/x"}"#,
    );
    assert_eq!(value["result"]["size"], 8);
    assert_eq!(body.as_deref(), Some(&b"uploaded"[..]));
    let (value, _) = answer(
        &store,
        r#"{"version":1,"command":"upload-get","name":"pxe/a"}"#,
    );
    assert_eq!(value["ok"], false);
    assert_eq!(value["error"], "no upload named pxe/a");
    let (value, _) = answer(
        &store,
        r#"{"version":1,"command":"upload-drop","name":"up/x"}"#,
    );
    assert_eq!(value["result"]["dropped"], "up/x");
    let (value, _) = answer(
        &store,
        r#"{"version":1,"command":"upload-drop","name":"up/x"}"#,
    );
    assert_eq!(value["ok"], false);
}

#[test]
fn bad_requests_are_answered_with_the_reason() {
    let store = store();
    for (line, reason) in [
        ("junk", "not a JSON request"),
        (r#"{"command":"status"}"#, "no \"version\""),
        (
            r#"{"version":2,"command":"status"}"#,
            "version 2 is not spoken",
        ),
        (r#"{"version":1,"command":"frobnicate"}"#, "bad request"),
        (
            r#"{"version":1,"command":"log-level","level":"loud"}"#,
            "unknown log level",
        ),
    ] {
        let (value, _) = answer(&store, line);
        assert_eq!(value["ok"], false, "{line}");
        let error = value["error"].as_str().expect("error");
        assert!(error.contains(reason), "{line}: {error}");
    }
}

#[test]
fn reload_is_left_to_the_driver_and_its_answer_says_refused() {
    let store = store();
    assert_eq!(
        ask(&store, r#"{"version":1,"command":"reload"}"#),
        Reply::Reload
    );
    let refused = reload_answer(Err("bad key".to_owned()), &Counters::default());
    let value: serde_json::Value = serde_json::from_slice(&refused.line).expect("JSON");
    assert_eq!(
        (value["ok"].clone(), value["refused"].clone()),
        (false.into(), true.into())
    );
    let changes = StoreChanges {
        added: vec![normalize_name("new").expect("name")],
        generation: 7,
        ..StoreChanges::default()
    };
    let done = reload_answer(Ok(&changes), &Counters::default());
    let value: serde_json::Value = serde_json::from_slice(&done.line).expect("JSON");
    assert_eq!(value["result"]["files"], 0);
    assert_eq!(value["result"]["generation"], 7);
    assert_eq!(value["result"]["added"], serde_json::json!(["new"]));
    assert_eq!(value["result"]["removed"], serde_json::json!([]));
}

#[test]
fn every_command_round_trips_through_its_line() {
    for command in [
        Command::Status,
        Command::Transfers,
        Command::Files { prefix: None },
        Command::Files {
            prefix: Some("p/".into()),
        },
        Command::Uploads,
        Command::UploadGet { name: "n".into() },
        Command::UploadDrop { name: "n".into() },
        Command::LogLevel {
            level: "debug".into(),
        },
        Command::Reload,
        Command::Metrics,
    ] {
        let request = Request::new(command);
        let line = request.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(parse(&line[..line.len() - 1]), Ok(request));
    }
}

#[test]
fn metrics_name_every_family_with_tftpd_and_no_client_or_file_label() {
    let store = store();
    let (value, _) = answer(&store, r#"{"version":1,"command":"metrics"}"#);
    let text = value["result"]["metrics"].as_str().expect("text");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("tftpd_"), "{line}");
        for label in ["peer=", "client=", "file=", "name="] {
            assert!(!line.contains(label), "{line}");
        }
    }
    for family in [
        "tftpd_requests_total{op=\"read\",result=\"not_found\"} 0",
        "tftpd_transfers_total{op=\"write\",outcome=\"completed\"} 0",
        "tftpd_transfer_bytes_total{op=\"read\"} 0",
        "tftpd_retransmissions_total{op=\"read\"} 0",
        "tftpd_transfers_active{op=\"read\"} 0",
        "tftpd_stray_datagrams_total 0",
        "tftpd_store_files 4",
        "tftpd_reloads_total{result=\"failed\"} 0",
        "tftpd_build_info{version=",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
}
