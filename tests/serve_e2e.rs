//! `realnet serve` end to end on a tiny trained run: the server gives the same scores as
//! `realnet predict` and `realnet test` (one inference path, batched or not), answers malformed
//! requests with 4xx JSON errors and keeps serving, routes everything in its OpenAPI document, and
//! finishes in-flight requests on SIGTERM.
mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "realnet-test-boundary-7d3f";
    let mut body = Vec::new();
    for (i, (name, bytes)) in parts.iter().enumerate() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image{i}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The server process; killed if the test fails before shutting it down.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(run: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_realnet"))
        .args(["--device", "cpu", "--threads", "1", "serve", "--run"])
        .arg(run)
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start realnet serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(a) = l.strip_prefix("listening on http://") {
                    break a.trim().to_string();
                }
            }
            _ => panic!("realnet serve exited before listening: {:?}", child.wait()),
        }
    };
    Server { child, addr }
}

/// name → score, from JSON lines with a "path" and a "score".
fn scores_by_name(lines: &str) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = lines
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            let p = Path::new(j["path"].as_str().unwrap());
            let name = format!(
                "{}/{}",
                p.parent().unwrap().file_name().unwrap().to_string_lossy(),
                p.file_name().unwrap().to_string_lossy()
            );
            (name, j["score"].as_f64().unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn serve_matches_predict_and_test_and_survives_bad_requests() {
    let Some(weights) = lite2_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("fabric");
    realnet::demo::write_dataset(&data, 128, 8, 2, 1).unwrap();
    let run = tmp.path().join("run");
    #[rustfmt::skip]
    ok(&realnet(&[
        "train", "--data", data.to_str().unwrap(), "--out", run.to_str().unwrap(),
        "--weights", weights.to_str().unwrap(),
        "--set", "model.image_size=128", "--set", "train.steps=2", "--set", "train.batch_size=2",
        "--set", "train.afs_batches=1", "--set", "train.val_anomalies_per_image=1",
        "--source", "procedural",
    ]));
    let test_dir = data.join("test");

    // The reference scores: `predict` (batches of 8) and `test --scores` (batches of 3).
    let predicted = scores_by_name(&ok(&realnet(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        test_dir.to_str().unwrap(),
    ])));
    let scores_file = tmp.path().join("test_scores.jsonl");
    ok(&realnet(&[
        "test",
        "--run",
        run.to_str().unwrap(),
        "--batch",
        "3",
        "--scores",
        scores_file.to_str().unwrap(),
    ]));
    let tested = scores_by_name(&std::fs::read_to_string(&scores_file).unwrap());
    assert_eq!(predicted.len(), 5);
    assert_eq!(tested.len(), 5);
    for ((n1, s1), (n2, s2)) in predicted.iter().zip(&tested) {
        assert_eq!(n1, n2);
        assert!((s1 - s2).abs() <= 1e-6, "{n1}: predict {s1} vs test {s2}");
    }

    let srv = start_server(
        &run,
        &[
            "--max-batch",
            "4",
            "--batch-wait-ms",
            "50",
            "--max-body-mb",
            "1",
            "--max-pixels",
            "1000000",
        ],
    );
    let addr = srv.addr.clone();

    // Each image on its own connection, all at once: the worker batches them in varying
    // compositions, and every score matches.
    let files: Vec<(String, Vec<u8>)> = predicted
        .iter()
        .map(|(n, _)| (n.clone(), std::fs::read(test_dir.join(n)).unwrap()))
        .collect();
    let served: Vec<(String, f64, serde_json::Value)> = std::thread::scope(|sc| {
        let handles: Vec<_> = files
            .iter()
            .map(|(n, bytes)| {
                let addr = &addr;
                sc.spawn(move || {
                    let (st, body) = http(
                        addr,
                        "POST",
                        "/v1/predict",
                        &[("Content-Type", "image/png")],
                        bytes,
                    );
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
                    let v = json(&body);
                    let p = v["predictions"][0].clone();
                    (n.clone(), p["score"].as_f64().unwrap(), p)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((name, s, p), (_, want)) in served.iter().zip(&predicted) {
        assert!(
            (s - want).abs() <= 1e-6,
            "{name}: serve {s} vs predict {want}"
        );
        assert_eq!(p["name"], "body");
        assert!(p["label"] == "normal" || p["label"] == "anomalous");
        assert!(p["normalised_score"].as_f64().unwrap() >= 0.0);
        assert!(p.get("map_png").is_none());
    }

    // All five in one multipart request, with maps.
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let (ctype, body) = multipart(&parts);
    let (st, resp) = http(
        &addr,
        "POST",
        "/v1/predict?map=png",
        &[("Content-Type", &ctype)],
        &body,
    );
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
    let v = json(&resp);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 5);
    for (p, (name, want)) in preds.iter().zip(&predicted) {
        assert_eq!(p["name"].as_str().unwrap(), name);
        let s = p["score"].as_f64().unwrap();
        assert!(
            (s - want).abs() <= 1e-6,
            "{name}: multipart {s} vs predict {want}"
        );
        assert_eq!(p["map_size"], 128);
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(p["map_png"].as_str().unwrap())
            .unwrap();
        let map = image::load_from_memory(&png).unwrap();
        assert_eq!(map.color(), image::ColorType::L8);
        assert_eq!((map.width(), map.height()), (128, 128));
    }

    // Malformed requests: 4xx with a JSON error, and the server keeps serving.
    let png = &files[0].1;
    let big = vec![0u8; 2 << 20];
    let (mp_ctype, _) = multipart(&[]);
    let huge_header = {
        // A valid PNG signature and IHDR claiming 5000×5000 pixels (over --max-pixels).
        let mut v = png[..33].to_vec();
        v[16..20].copy_from_slice(&5000u32.to_be_bytes());
        v[20..24].copy_from_slice(&5000u32.to_be_bytes());
        v
    };
    #[rustfmt::skip]
    let bad: Vec<Case> = vec![
        ("POST", "/v1/predict", vec![("Content-Type", "image/png")], b"", 400),
        ("POST", "/v1/predict", vec![("Content-Type", "image/png")], b"hello, not an image", 422),
        ("POST", "/v1/predict", vec![("Content-Type", "image/png")], &png[..200], 422),
        ("POST", "/v1/predict", vec![("Content-Type", "image/png")], &huge_header, 422),
        ("POST", "/v1/predict", vec![("Content-Type", "text/plain")], png, 415),
        ("POST", "/v1/predict", vec![("Content-Type", "application/x-www-form-urlencoded")], png, 415),
        ("POST", "/v1/predict", vec![("Content-Type", "application/octet-stream")], &big, 413),
        ("POST", "/v1/predict", vec![("Content-Type", "multipart/form-data")], png, 400),
        ("POST", "/v1/predict", vec![("Content-Type", &mp_ctype)], b"garbage", 400),
        ("POST", "/v1/predict?map=jpeg", vec![("Content-Type", "image/png")], png, 400),
        ("GET", "/v1/predict", vec![], b"", 405),
        ("GET", "/nope", vec![], b"", 404),
    ];
    for (method, path, headers, body, want) in bad {
        let (st, resp) = http(&addr, method, path, &headers, body);
        let v = json(&resp);
        assert_eq!(st, want, "{method} {path} {headers:?}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }
    // A bad part in a multipart request fails it, naming the part.
    let (ctype, body) = multipart(&[("good.png", png), ("notes.txt", b"just text")]);
    let (st, resp) = http(
        &addr,
        "POST",
        "/v1/predict",
        &[("Content-Type", &ctype)],
        &body,
    );
    assert_eq!(st, 422);
    assert!(json(&resp)["error"].as_str().unwrap().contains("notes.txt"));

    // Still serving, and with the same score.
    let (st, resp) = http(&addr, "POST", "/v1/predict", &[], png);
    assert_eq!(st, 200);
    let s = json(&resp)["predictions"][0]["score"].as_f64().unwrap();
    assert!((s - predicted[0].1).abs() <= 1e-6);

    // Metadata, health, and every route of the OpenAPI document answers.
    let (st, resp) = http(&addr, "GET", "/v1/model", &[], b"");
    assert_eq!(st, 200);
    let m = json(&resp);
    assert_eq!(m["backbone"], "efficientnet_lite2");
    assert_eq!(m["precision"], "f32");
    assert_eq!(m["image_size"], 128);
    assert_eq!(m["preset"], "lite");
    assert_eq!(m["realnet_version"], env!("CARGO_PKG_VERSION"));
    assert!(m["threshold"]["image"].as_f64().unwrap() == predicted_threshold(&run));
    assert_eq!(m["training"]["steps"], 2);
    let (st, resp) = http(&addr, "GET", "/healthz", &[], b"");
    assert_eq!((st, json(&resp)["status"].clone()), (200, "ok".into()));
    let (st, resp) = http(&addr, "GET", "/openapi.json", &[], b"");
    assert_eq!(st, 200);
    let doc = json(&resp);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m = method.to_ascii_uppercase();
            let (st, _) = http(&addr, &m, path, &[("Content-Type", "image/png")], png);
            assert!(
                st != 404 && st != 405,
                "{m} {path} in openapi.json answers {st}"
            );
        }
    }

    // A second server with tight limits: a full queue answers 503 (five images into a queue of one,
    // while the worker is busy with one forward pass at a time), a stalled upload 408.
    let tight = start_server(
        &run,
        &["--max-queue", "1", "--max-batch", "1", "--timeout-s", "1"],
    );
    let (ctype, body) = multipart(&parts);
    let (st, resp) = http(
        &tight.addr,
        "POST",
        "/v1/predict",
        &[("Content-Type", &ctype)],
        &body,
    );
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&resp));
    assert!(json(&resp)["error"].as_str().unwrap().contains("busy"));
    {
        let mut s = TcpStream::connect(&tight.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // Promises 1000 bytes, sends 10, then stalls.
        s.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789")
            .unwrap();
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"error\""), "{text}");
    }
    let (st, _) = http(&tight.addr, "GET", "/healthz", &[], b"");
    assert_eq!(st, 200);
    drop(tight);

    // SIGTERM while a request is in flight: it still gets its answer, then the server exits 0.
    let mut srv = srv;
    let (ctype, body) = multipart(&parts);
    std::thread::scope(|sc| {
        let inflight = sc.spawn(|| {
            http(
                &addr,
                "POST",
                "/v1/predict",
                &[("Content-Type", &ctype)],
                &body,
            )
        });
        std::thread::sleep(Duration::from_millis(150));
        let pid = srv.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let (st, resp) = inflight.join().unwrap();
        assert_eq!(st, 200, "{}", String::from_utf8_lossy(&resp));
        assert_eq!(json(&resp)["predictions"].as_array().unwrap().len(), 5);
    });
    let status = srv.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "serve should exit cleanly on SIGTERM"
    );
}

/// method, path, headers, body, expected status.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16);

fn predicted_threshold(run: &Path) -> f64 {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    meta["threshold"]["image"].as_f64().unwrap()
}

#[test]
fn a_bad_run_folder_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let out = realnet(&[
        "serve",
        "--run",
        tmp.path().to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
