//! Criterion micro-benchmarks of the pure code every segment request runs: the playback
//! token check, the range/conditional decision and the per-viewer playlist rewrite (a full
//! parse and write, and the template render the server uses).
//!
//!     cargo bench --bench hot_paths

use axum::http::{HeaderMap, HeaderValue};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use lectern::playback::playlist::{rewrite, Rewrite, Template};
use lectern::playback::range::{decide, Validators};
use lectern::playback::tokens::PlaybackKeys;
use lectern::types::VideoId;

fn token_verify(c: &mut Criterion) {
    let keys = PlaybackKeys::parse("k1:0123456789abcdef0123456789abcdef", 3600).unwrap();
    let now = chrono::Utc::now().timestamp();
    let (token, _) = keys.issue("42", VideoId::new(7), now);
    c.bench_function("token verify", |b| {
        b.iter(|| keys.verify(black_box(Some(token.as_str())), VideoId::new(7)).unwrap())
    });
}

fn range_decision(c: &mut Criterion) {
    let v = Validators {
        len: 912_384,
        etag: "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5",
        last_modified: 1_700_000_000,
    };
    let mut ranged = HeaderMap::new();
    ranged.insert("range", HeaderValue::from_static("bytes=4096-8191"));
    ranged.insert("if-range", HeaderValue::from_static("\"5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5\""));
    c.bench_function("range decision, 4 KiB with If-Range", |b| {
        b.iter(|| decide(black_box(&ranged), &v))
    });
    let plain = HeaderMap::new();
    c.bench_function("range decision, whole object", |b| b.iter(|| decide(black_box(&plain), &v)));
}

fn playlist_rewrite(c: &mut Criterion) {
    // A 45-minute lecture's media playlist: 675 four-second segments, AES-128 keyed.
    let mut media = String::from(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n\
         #EXT-X-KEY:METHOD=AES-128,URI=\"../key\",IV=0x00000000000000000000000000000001\n",
    );
    for i in 0..675 {
        media.push_str(&format!("#EXTINF:4.000,\nseg_{i:05}.ts\n"));
    }
    media.push_str("#EXT-X-ENDLIST\n");
    let token = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiI0MiIsInZpZCI6NywidHlwIjoicGxheWJhY2siLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMH0.c2lnbmF0dXJl";
    for public_segments in [true, false] {
        let name = format!("playlist rewrite, 675 segments, public_segments={public_segments}");
        c.bench_function(&name, |b| {
            b.iter(|| {
                rewrite(
                    black_box(media.as_bytes()),
                    Rewrite { token, public_segments, key_refresh_secs: 0 },
                )
                .unwrap()
            })
        });
        // What the server does per request: the stored playlist's template (made once per
        // playlist) joined with the viewer's token, and the copy's validator.
        let template = Template::new(media.as_bytes(), public_segments, 0).unwrap();
        let name =
            format!("playlist render (template), 675 segments, public_segments={public_segments}");
        c.bench_function(&name, |b| {
            b.iter(|| {
                let t = black_box(token);
                (template.render(t), template.etag(t))
            })
        });
    }
}

criterion_group!(benches, token_verify, range_decision, playlist_rewrite);
criterion_main!(benches);
