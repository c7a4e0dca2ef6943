// A student's page: plays a Lectern master playlist with hls.js directly (mode=hlsjs) or
// through react-player (mode=reactplayer), the way the course site does, and reports what
// happened on window.__result for the test driver.
import Hls from "hls.js";
import React from "react";
import { createRoot } from "react-dom/client";
import ReactPlayer from "react-player";

const params = new URLSearchParams(location.search);
const src = params.get("src");
const mode = params.get("mode");
const target = Number(params.get("seconds") || "4");
const events = [];
// How playback went: where it started, how often it stalled once playing, and (hls.js) whether
// the media playlist was still growing when it began and was seen to end.
const playback = { startedAt: null, stalls: 0, liveAtStart: null, sawEndList: false };

function report(result) {
  if (!window.__result) window.__result = { ...result, ...playback, events };
}

function watch(video) {
  const started = performance.now();
  video.addEventListener("playing", () => {
    if (playback.startedAt === null) playback.startedAt = video.currentTime;
  });
  video.addEventListener("waiting", () => {
    if (playback.startedAt !== null) {
      playback.stalls += 1;
      events.push(`stall@${video.currentTime.toFixed(2)}`);
    }
  });
  video.addEventListener("timeupdate", () => {
    if (video.currentTime >= target) {
      report({ ok: true, currentTime: video.currentTime, width: video.videoWidth, height: video.videoHeight, ms: performance.now() - started });
    }
  });
  video.addEventListener("error", () => report({ ok: false, error: `media error ${video.error && video.error.code}` }));
}

function element() {
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  document.body.appendChild(video);
  return video;
}

if (mode === "shaka") {
  // Shaka Player with its own TS transmuxer, from the very start even of a growing playlist.
  const shaka = (await import("shaka-player/dist/shaka-player.compiled.js")).default;
  shaka.polyfill.installAll();
  const video = element();
  watch(video);
  const player = new shaka.Player();
  await player.attach(video);
  player.addEventListener("error", (e) => report({ ok: false, error: `shaka error ${e.detail && e.detail.code}` }));
  try {
    await player.load(src, 0);
    playback.liveAtStart = player.isLive();
    video.addEventListener("timeupdate", () => {
      if (!player.isLive()) playback.sawEndList = true;
    });
    video.play().catch((e) => events.push(`play:${e}`));
  } catch (e) {
    report({ ok: false, error: `shaka load failed ${e && e.code}` });
  }
} else if (mode === "videojs") {
  // Video.js with its HTTP streaming engine (VHS) rather than the browser's own HLS.
  const videojs = (await import("video.js")).default;
  const video = element();
  watch(video);
  const player = videojs(video, { autoplay: true, muted: true, html5: { vhs: { overrideNative: true } } });
  player.on("error", () => report({ ok: false, error: `video.js error ${player.error() && player.error().code}` }));
  player.src({ src, type: "application/x-mpegURL" });
  player.one("loadedmetadata", () => {
    playback.liveAtStart = !Number.isFinite(player.duration());
    player.currentTime(0);
    player.play().catch((e) => events.push(`play:${e}`));
  });
  player.on("durationchange", () => {
    if (Number.isFinite(player.duration())) playback.sawEndList = true;
  });
} else if (mode === "hlsjs") {
  const video = document.createElement("video");
  video.muted = true;
  video.autoplay = true;
  document.body.appendChild(video);
  watch(video);
  if (!Hls.isSupported()) report({ ok: false, error: "hls.js: MSE not supported" });
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_e, data) => {
    events.push(`${data.type}:${data.details}${data.fatal ? ":fatal" : ""}`);
    if (data.fatal) report({ ok: false, error: `hls.js fatal ${data.type} ${data.details}` });
  });
  hls.on(Hls.Events.LEVEL_LOADED, (_e, data) => {
    if (playback.liveAtStart === null) playback.liveAtStart = data.details.live;
    if (!data.details.live) playback.sawEndList = true;
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
    events.push(`levels:${data.levels.length}`);
    video.play().catch((e) => events.push(`play:${e}`));
  });
  hls.loadSource(src);
  hls.attachMedia(video);
} else {
  function App() {
    return React.createElement(ReactPlayer, {
      src,
      playing: true,
      muted: true,
      controls: true,
      width: 640,
      height: 360,
      onError: (e) => {
        events.push(`error:${e && e.message}`);
      },
      onReady: () => {
        events.push("ready");
        // react-player renders a media element (a custom element wrapping <video>).
        const el = document.querySelector("hls-video, video");
        if (el) watch(el);
      },
    });
  }
  createRoot(document.getElementById("root")).render(React.createElement(App));
  // Also watch whatever element appears, in case onReady fires before we look.
  const timer = setInterval(() => {
    const el = document.querySelector("hls-video, video");
    if (el && el.currentTime >= target) {
      clearInterval(timer);
      report({ ok: true, currentTime: el.currentTime, width: el.videoWidth, height: el.videoHeight });
    }
  }, 200);
}
