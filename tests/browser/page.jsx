// A student's page: plays a Lectern master playlist with hls.js directly (mode=hlsjs), through
// react-player (mode=reactplayer), the way the course site does, or with Shaka Player or
// Video.js, and reports what happened on window.__result for the test driver. With
// `captions=LANG` the text track in LANG is turned on, and the report waits for one of its cues
// to show (listing the tracks the player offers and the cues it showed).
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

const captions = params.get("captions") || "";
// Text tracks the player offers ({language, label, kind}) and the cue texts it showed.
const text = { tracks: [], cues: [] };

function report(result) {
  if (!window.__result) window.__result = { ...result, ...playback, events, ...text };
}

// Where the player keeps its text tracks: the element's own, or (Video.js) its emulated ones.
let tracksOf = (video) => [...video.textTracks];

/// The text tracks as offered, and the cues showing now.
function readTracks(video) {
  const tracks = tracksOf(video);
  if (tracks.length) text.tracks = tracks.map((t) => ({ language: t.language, label: t.label, kind: t.kind, mode: t.mode }));
  for (const t of tracks) {
    if (t.mode === "showing" && t.cues) {
      text.loaded = Array.from({ length: t.cues.length }, (_, i) => `${t.cues[i].startTime.toFixed(2)}-${t.cues[i].endTime.toFixed(2)}`);
    }
    if (t.mode === "showing" && t.activeCues) {
      for (let i = 0; i < t.activeCues.length; i++) {
        const cue = t.activeCues[i];
        if (!text.cues.includes(cue.text)) text.cues.push(cue.text);
      }
    }
  }
}

/// Played far enough: past the target, and (with captions) once a cue has shown.
function farEnough(video) {
  if (!captions) return true;
  readTracks(video);
  return text.cues.length > 0 || (video.duration && video.currentTime >= video.duration - 0.3);
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
    if (video.currentTime >= target && farEnough(video)) {
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
    if (captions) {
      player.selectTextLanguage(captions);
      await player.setTextTrackVisibility(true);
      events.push(`shaka text: ${player.getTextTracks().map((t) => `${t.language}/${t.label}`).join(",")}`);
    }
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
  if (captions) {
    const list = player.textTracks();
    tracksOf = () => Array.from({ length: list.length }, (_, i) => list[i]);
    // Turned on once VHS listens for the change (it loads a subtitle playlist on it).
    player.one("loadedmetadata", () => {
      // Video.js's own TextTrackList is array-like, not iterable.
      for (let i = 0; i < list.length; i++) {
        const t = list[i];
        if (t.kind === "metadata") continue;
        t.mode = t.language && t.language.startsWith(captions) ? "showing" : "disabled";
      }
    });
  }
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
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_e, data) => {
    if (!captions) return;
    const i = data.subtitleTracks.findIndex((t) => t.lang && t.lang.startsWith(captions));
    events.push(`subtitles:${data.subtitleTracks.map((t) => t.lang).join(",")}`);
    if (i >= 0) {
      hls.subtitleDisplay = true;
      hls.subtitleTrack = i;
    }
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
