//! `POST /v1/predict` up to the model: query string, content type, raw or multipart body,
//! decoding and resizing (`realnet::serve::routes::parse_predict`, what every request of
//! `realnet serve` goes through). The input is `QUERY \n CONTENT-TYPE \n BODY`. An answer must be
//! images at the model's size; a refusal must be a 4xx — a 5xx or a panic is a bug.
#![no_main]
use axum::body::Body;
use axum::http::{header, Request};
use libfuzzer_sys::fuzz_target;
use realnet::serve::routes::parse_predict;
use realnet_data::image_io::DecodeOptions;
use std::sync::OnceLock;

const SIZE: u32 = 16;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime")
    })
}

fn split_line(b: &[u8]) -> (&[u8], &[u8]) {
    match b.iter().position(|&c| c == b'\n') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (query, rest) = split_line(data);
    let (ctype, body) = split_line(rest);
    let uri = format!("/v1/predict?{}", String::from_utf8_lossy(query));
    let mut req = Request::builder().method("POST").uri(uri);
    if !ctype.is_empty() {
        req = req.header(header::CONTENT_TYPE, ctype);
    }
    // hyper refuses what does not form a request (bad URI or header bytes) before any handler.
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let dec = DecodeOptions {
        max_pixels: 1 << 20,
    };
    match runtime().block_on(parse_predict(req, SIZE, dec)) {
        Ok(p) => {
            assert!(!p.images.is_empty());
            for (_, img) in &p.images {
                assert_eq!((img.width(), img.height()), (SIZE, SIZE));
            }
        }
        Err(e) => assert!(e.status.is_client_error(), "{} {}", e.status, e.message),
    }
});
