//! Real players in headless Chromium: `tests/browser/play.mjs` drives hls.js, react-player,
//! Shaka Player or Video.js against a master playlist and reports what happened.

use serde_json::Value;

/// Play `url` with `mode` (`hlsjs`, `reactplayer`, `shaka`, `videojs`) until it passes
/// `seconds`; with `captions`, also until a cue of that language's track shows. The player's
/// report (`ok`, `currentTime`, `events`, `tracks`, `cues`, …).
pub async fn play(url: &str, mode: &str, seconds: f64, captions: Option<&str>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/play.mjs");
    let seconds = seconds.to_string();
    let mut args = vec![script, mode, url, &seconds];
    args.extend(captions);
    let out = tokio::process::Command::new("node").args(&args).output().await.expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{mode}: play.mjs failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
        .unwrap_or_else(|_| panic!("{mode}: play.mjs said: {stdout}"))
}
