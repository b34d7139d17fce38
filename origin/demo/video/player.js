// The demo player: plays ?src= (an HLS playlist with hls.js, a DASH MPD with dash.js) and
// shows the rendition, the buffer and the Cache-Status of the last segment. What it sees is
// kept in window.outpost, which the browser test reads.
"use strict";

const state = {
  player: "",
  src: "",
  errors: [],
  // Every media segment or part response: { url, status, cacheStatus }.
  segments: [],
  playing: false,
};
window.outpost = state;

const $ = (id) => document.getElementById(id);
const isMedia = (url) => /\.(m4s|mp4)(\?|$)/.test(url);

function record(url, status, cacheStatus) {
  if (!isMedia(url)) return;
  state.segments.push({ url: new URL(url, location.href).pathname, status, cacheStatus: cacheStatus || "" });
  $("segment").textContent = url.replace(/^.*\//, "");
  $("cache-status").textContent = cacheStatus || "(none)";
}

// Both players load segments with XMLHttpRequest or fetch: note each response's Cache-Status.
const open = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {
  this.addEventListener("loadend", () => record(this.responseURL || String(url), this.status, this.getResponseHeader("cache-status")));
  return open.call(this, method, url, ...rest);
};
const originalFetch = window.fetch.bind(window);
window.fetch = async (input, init) => {
  const response = await originalFetch(input, init);
  record(response.url || String(input.url || input), response.status, response.headers.get("cache-status"));
  return response;
};

function fail(message) {
  state.errors.push(String(message));
  $("error").textContent = state.errors.join("; ");
}

const video = $("video");
const src = new URLSearchParams(location.search).get("src") || "/video/vod/master.m3u8";
state.src = src;
$("stream").textContent = src;
for (const link of document.querySelectorAll("#streams a")) {
  if (new URL(link.href).search === location.search) link.setAttribute("aria-current", "page");
}

if (/\.m3u8(\?|$)/.test(src)) {
  state.player = "hls.js";
  if (typeof Hls === "undefined") {
    fail("hls.js is not installed: run scripts/player-libs");
  } else if (!Hls.isSupported()) {
    fail("this browser has no Media Source Extensions");
  } else {
    state.player = `hls.js ${Hls.version}`;
    const query = new URLSearchParams(location.search);
    // hls.js's low-latency mode (parts, blocking reloads) with ?ll=1: in headless Chromium on
    // a small machine it takes 15 to 30 s to start, against 5 to 10 s for the standard mode.
    const hls = new Hls({ lowLatencyMode: query.get("ll") === "1", debug: query.has("debug") });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) fail(`hls.js: ${data.type} ${data.details}`);
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  }
} else {
  state.player = "dash.js";
  if (typeof dashjs === "undefined") {
    fail("dash.js is not installed: run scripts/player-libs");
  } else {
    const player = dashjs.MediaPlayer().create();
    state.player = `dash.js ${player.getVersion()}`;
    player.on(dashjs.MediaPlayer.events.ERROR, (event) => {
      const error = event.error || {};
      fail(`dash.js: ${error.code || ""} ${error.message || JSON.stringify(error)}`);
    });
    player.initialize(video, src, true);
  }
}
$("player").textContent = state.player;

video.addEventListener("playing", () => { state.playing = true; });
video.addEventListener("error", () => fail(`video element: ${video.error && video.error.message}`));
setInterval(() => {
  $("rendition").textContent = video.videoWidth ? `${video.videoWidth}x${video.videoHeight}` : "-";
  $("position").textContent = `${video.currentTime.toFixed(1)} s`;
  const buffered = video.buffered;
  let ahead = 0;
  for (let i = 0; i < buffered.length; i++) {
    if (buffered.start(i) <= video.currentTime && video.currentTime <= buffered.end(i)) {
      ahead = buffered.end(i) - video.currentTime;
    }
  }
  $("buffer").textContent = `${ahead.toFixed(1)} s`;
}, 250);
