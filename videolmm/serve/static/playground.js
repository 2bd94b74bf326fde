"use strict";
// The videolmm playground: plain JavaScript, no dependencies. Talks to this server's OpenAI routes
// (relative URLs, so the page works under any route prefix) and keeps the API key in sessionStorage.
(() => {
  const $ = (id) => document.getElementById(id);
  const limits = JSON.parse($("config").textContent).limits;
  const KEY = "videolmm.apiKey";
  const state = {
    history: [], // the messages sent back on every turn (user and assistant, system excluded)
    videos: [], // per video in the history, in order: {name, objectUrl} (objectUrl null for file://)
    attachment: null, // {kind, url, name, size, objectUrl}
    controller: null, // the AbortController of the answer streaming now
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bytes(n) {
    if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB (${n.toLocaleString("en")} bytes)`;
    if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB (${n.toLocaleString("en")} bytes)`;
    return `${n} bytes`;
  }

  function status(text) {
    $("status").textContent = text;
  }

  function showError(error, meta) {
    $("error-message").textContent = error.message;
    const parts = [];
    if (error.status) parts.push(`HTTP ${error.status}`);
    if (error.code) parts.push(error.code);
    if (error.param) parts.push(`param: ${error.param}`);
    $("error-meta").textContent = meta || parts.join(" · ");
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
    $("error-message").textContent = "";
    $("error-meta").textContent = "";
  }

  function localProblem(message) {
    showError({ message }, "checked in the browser; nothing was sent");
  }

  // ------------------------------------------------------------------ the API and its key

  function api(path, init = {}) {
    const headers = new Headers(init.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    return fetch(path, { ...init, headers });
  }

  async function apiError(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: fall back to the status line below
    }
    const error = body && body.error ? body.error : { message: `HTTP ${response.status} ${response.statusText}` };
    return { ...error, status: response.status };
  }

  let afterKey = null;

  function askKey(message, retry) {
    afterKey = retry;
    $("key-message").textContent = message;
    $("key-panel").hidden = false;
    $("key-input").focus();
    status("the server needs its API key");
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("key-input").value = "";
    $("key-panel").hidden = true;
    const retry = afterKey;
    afterKey = null;
    if (retry) retry();
  });

  async function loadModels() {
    status("loading models…");
    let response;
    try {
      response = await api("v1/models");
    } catch (exc) {
      showError({ message: `could not reach the server: ${exc.message}` });
      return;
    }
    if (response.status === 401) {
      askKey((await apiError(response)).message, loadModels);
      return;
    }
    if (!response.ok) {
      showError(await apiError(response));
      return;
    }
    const select = $("model");
    const previous = select.value;
    select.replaceChildren();
    for (const card of (await response.json()).data) select.append(new Option(card.id, card.id));
    if (previous) select.value = previous;
    hideError();
    status(`${select.options.length} models`);
  }

  // ------------------------------------------------------------------ media

  function setAttachment(attachment) {
    if (state.attachment && state.attachment.objectUrl) {
      URL.revokeObjectURL(state.attachment.objectUrl);
    }
    state.attachment = attachment;
    const box = $("attachment");
    box.classList.remove("too-big");
    box.hidden = !attachment;
    box.textContent = attachment ? `Attached ${attachment.kind}: ${attachment.name} (${bytes(attachment.size)})` : "";
  }

  function readDataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function attachFile(file) {
    const kind = file.type.startsWith("image/") ? "image" : "video";
    const perFile = kind === "video" ? "max_video_bytes" : "max_image_bytes";
    const which = limits.max_data_url_bytes <= limits[perFile] ? "max_data_url_bytes" : perFile;
    const limit = limits[which];
    if (file.size > limit) {
      setAttachment(null);
      $("file").value = "";
      const box = $("attachment");
      box.hidden = false;
      box.classList.add("too-big");
      box.textContent =
        `${file.name} is too big to send from the browser: ${bytes(file.size)}; this server takes a ${kind} ` +
        `as a data: URL up to ${bytes(limit)} (${which}). Use a smaller file, or name it by a file:// path ` +
        "under the server's media roots.";
      return;
    }
    const url = await readDataUrl(file);
    const objectUrl = kind === "video" ? URL.createObjectURL(file) : null;
    setAttachment({ kind, url, name: file.name, size: file.size, objectUrl });
  }

  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) attachFile(file).catch((exc) => localProblem(`could not read ${file.name}: ${exc.message}`));
  });

  function takeMedia() {
    if (state.attachment) return state.attachment;
    const url = $("media-url").value.trim();
    if (!url) return null;
    const name = decodeURIComponent(url.split("/").pop() || url);
    return { kind: $("media-kind").value, url, name, size: 0, objectUrl: null };
  }

  function mediaPart(media) {
    return media.kind === "video"
      ? { type: "video_url", video_url: { url: media.url } }
      : { type: "image_url", image_url: { url: media.url } };
  }

  // ------------------------------------------------------------------ the conversation

  function settings() {
    const body = {};
    const maxTokens = $("max-tokens").value.trim();
    if (maxTokens) body.max_tokens = Number(maxTokens);
    const temperature = $("temperature").value.trim();
    body.temperature = temperature ? Number(temperature) : 0;
    const frames = $("frames").value.trim();
    if (frames) body.media_io_kwargs = { video: { num_frames: Number(frames) } };
    return body;
  }

  function bubble(role, text) {
    const node = el("div", `msg ${role}`);
    node.append(el("div", "text", text));
    $("chat").append(node);
    node.scrollIntoView({ block: "end" });
    return node;
  }

  async function send() {
    if (state.controller) return;
    const question = $("question").value.trim();
    const model = $("model").value;
    if (!model) return localProblem("No model to ask: the model list is empty or not loaded yet.");
    if (!question) return localProblem("Type a question first.");
    const media = takeMedia();
    const user = { role: "user", content: media ? [mediaPart(media), { type: "text", text: question }] : question };
    const system = $("system").value.trim();
    const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.history, user];
    const body = { model, messages, ...settings(), stream: true, stream_options: { include_usage: true } };
    const json = JSON.stringify(body);
    const size = new Blob([json]).size;
    if (size > limits.max_request_bytes) {
      return localProblem(
        `This request would be ${bytes(size)}; the server takes up to ${bytes(limits.max_request_bytes)} ` +
          "(max_request_bytes). Start a new conversation, or send the video by a file:// path.",
      );
    }
    hideError();
    const userNode = bubble("user", question);
    if (media) userNode.prepend(el("div", "media", `${media.kind}: ${media.name}`));
    const answer = bubble("assistant", "");
    answer.dataset.state = "streaming";
    answer.setAttribute("aria-busy", "true");
    const videos = [...state.videos, ...(media && media.kind === "video" ? [media] : [])];
    state.controller = new AbortController();
    $("send").disabled = true;
    $("stop").disabled = false;
    status("waiting for the first token…");
    try {
      const outcome = await stream(json, answer, state.controller.signal);
      if (outcome.unauthorized) {
        userNode.remove();
        answer.remove();
        askKey(outcome.unauthorized.message, send);
        return;
      }
      if (outcome.stopped && !outcome.started) {
        userNode.remove(); // stopped before any text: nothing to keep
        answer.remove();
        status("stopped");
        return;
      }
      if (outcome.error && !outcome.started) {
        userNode.remove(); // nothing was answered: the question and media stay in the composer to retry
        answer.remove();
        showError(outcome.error);
        status("error");
        return;
      }
      if (outcome.error) {
        answer.dataset.state = "error";
        showError(outcome.error);
        status("error");
        return;
      }
      state.history.push(user, { role: "assistant", content: outcome.text });
      state.videos = videos;
      $("question").value = "";
      $("media-url").value = "";
      $("file").value = "";
      state.attachment = null; // now one of state.videos: its object URL stays for the thumbnails
      setAttachment(null);
      answer.dataset.state = outcome.stopped ? "stopped" : "done";
      showMeta(answer, outcome);
      status(outcome.stopped ? "stopped" : "ready");
      if (outcome.info) await showFrames(answer, outcome.info, videos);
    } finally {
      answer.removeAttribute("aria-busy");
      state.controller = null;
      $("send").disabled = false;
      $("stop").disabled = true;
    }
  }

  // Read the SSE response with a stream reader; every content delta goes into the answer as it arrives.
  async function stream(json, answer, signal) {
    const out = { text: "", started: false, error: null, info: null, usage: null, finish: null, stopped: false };
    const textNode = answer.querySelector(".text");
    const t0 = performance.now();
    let response;
    try {
      response = await api("v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: json,
        signal,
      });
    } catch (exc) {
      if (exc.name === "AbortError") out.stopped = true;
      else out.error = { message: `could not reach the server: ${exc.message}` };
      return out;
    }
    if (response.status === 401) return { ...out, unauthorized: await apiError(response) };
    if (!response.ok) return { ...out, error: await apiError(response) };
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let done = false;
    try {
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        let end;
        while (!done && (end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of block.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") {
              done = true;
              break;
            }
            const event = JSON.parse(data);
            if (event.error) {
              out.error = { ...event.error, status: response.status };
              continue;
            }
            const choice = event.choices && event.choices[0];
            const delta = choice && choice.delta && choice.delta.content;
            if (delta) {
              if (!out.started) {
                out.started = true;
                out.ttft = performance.now() - t0;
                status("streaming…");
              }
              out.text += delta;
              textNode.textContent = out.text;
            }
            if (choice && choice.finish_reason) out.finish = choice.finish_reason;
            if (event.videolmm) out.info = event.videolmm;
            if (event.usage) out.usage = event.usage;
          }
        }
      }
    } catch (exc) {
      if (exc.name === "AbortError") out.stopped = true;
      else out.error = { message: `the stream broke off: ${exc.message}` };
    }
    out.started = out.started || out.finish !== null;
    out.total = performance.now() - t0;
    return out;
  }

  function showMeta(answer, outcome) {
    const meta = el("div", "meta");
    const parts = [];
    if (outcome.usage) {
      parts.push(`${outcome.usage.prompt_tokens} prompt + ${outcome.usage.completion_tokens} completion tokens`);
      meta.dataset.completionTokens = outcome.usage.completion_tokens;
    }
    if (outcome.ttft !== undefined) {
      parts.push(`first token ${(outcome.ttft / 1000).toFixed(2)} s`);
      meta.dataset.ttftMs = Math.round(outcome.ttft);
    }
    parts.push(`total ${(outcome.total / 1000).toFixed(2)} s`);
    meta.dataset.totalMs = Math.round(outcome.total);
    if (outcome.finish) parts.push(`finish: ${outcome.finish}`);
    if (outcome.info) parts.push(`${outcome.info.visual_tokens} visual tokens`);
    if (outcome.stopped) parts.push("stopped");
    meta.textContent = parts.join(" · ");
    answer.append(meta);
  }

  // Resolves at the target's next `name` event; rejects on its "error" event or after `ms`.
  function once(target, name, ms) {
    return new Promise((resolve, reject) => {
      const settle = (outcome) => {
        clearTimeout(timer);
        target.removeEventListener(name, ok);
        target.removeEventListener("error", failed);
        outcome();
      };
      const ok = () => settle(resolve);
      const failed = () => settle(() => reject(new Error("the browser cannot decode it")));
      const timer = setTimeout(() => settle(() => reject(new Error(`no ${name} event in ${ms} ms`))), ms);
      target.addEventListener(name, ok);
      target.addEventListener("error", failed);
    });
  }

  // Seek and wait until the frame there is presented: "seeked" alone can come before it is, and a
  // canvas would then get the previous frame (seen under CPU load).
  function seek(video, time) {
    const seeked = once(video, "seeked", 10000);
    const presented = new Promise((resolve) => {
      if (!("requestVideoFrameCallback" in video)) return resolve();
      const timer = setTimeout(() => (video.cancelVideoFrameCallback(id), resolve()), 1000);
      const id = video.requestVideoFrameCallback(() => (clearTimeout(timer), resolve()));
    });
    video.currentTime = time;
    return Promise.all([seeked, presented]);
  }

  // The frames the model saw, per video: a <video> element seeked to each timestamp, drawn to a canvas.
  async function showFrames(answer, info, videos) {
    for (let v = 0; v < info.frames.length; v++) {
      const indices = info.frames[v];
      const times = info.timestamps[v] || [];
      const row = el("div", "frames");
      row.dataset.video = String(v);
      answer.append(row);
      const chip = (k) =>
        row.append(el("span", "chip", `#${indices[k]} · ${times[k] === undefined ? "?" : times[k].toFixed(2)} s`));
      const source = videos[v] && videos[v].objectUrl;
      if (!source) {
        indices.forEach((_, k) => chip(k)); // a file:// video: the browser has no copy to draw from
        continue;
      }
      const video = document.createElement("video");
      video.muted = true;
      video.preload = "auto";
      try {
        const loaded = once(video, "loadeddata", 10000);
        video.src = source;
        await loaded;
        const canvas = document.createElement("canvas");
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        const context = canvas.getContext("2d");
        for (let k = 0; k < indices.length; k++) {
          const target = Math.min(times[k], Math.max(0, video.duration - 1e-3));
          if (video.currentTime !== target) await seek(video, target);
          context.drawImage(video, 0, 0);
          const figure = el("figure");
          const img = el("img");
          img.src = canvas.toDataURL("image/png");
          img.alt = `frame ${indices[k]} at ${times[k].toFixed(2)} s`;
          img.title = img.alt;
          img.dataset.time = String(times[k]);
          img.dataset.index = String(indices[k]);
          figure.append(img, el("figcaption", "", `${times[k].toFixed(2)} s`));
          row.append(figure);
        }
      } catch (exc) {
        row.replaceChildren();
        indices.forEach((_, k) => chip(k));
        row.append(el("span", "hint", `(no thumbnails: ${exc.message})`));
      } finally {
        video.removeAttribute("src");
        video.load();
      }
    }
  }

  // ------------------------------------------------------------------ wiring

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      send();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("new-chat").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    for (const video of state.videos) if (video.objectUrl) URL.revokeObjectURL(video.objectUrl);
    state.history = [];
    state.videos = [];
    $("chat").replaceChildren();
    hideError();
    status("new conversation");
  });

  $("max-tokens").value = String(Math.min(128, limits.max_tokens));
  $("limits").textContent =
    `This server takes up to ${limits.max_frames} frames per video, ${limits.max_tokens} tokens per answer, ` +
    `${limits.max_videos_per_request} videos and ${limits.max_images_per_request} images per request, ` +
    `${bytes(limits.max_data_url_bytes)} per file sent from the browser and ` +
    `${bytes(limits.max_request_bytes)} per request (the whole conversation, resent each turn).`;
  loadModels();
})();
