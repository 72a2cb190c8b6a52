/* vitnb attention explorer page. Every map was computed in Python (vitnb.maps.every_map) and is stored one byte
   per value over its own range (vitnb.explorer.encode); this script only decodes and draws, by the rules of
   vitnb.plotting.render.render_overlay. No libraries, no network. */
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("vitnb-data").textContent);
  const $ = (id) => document.getElementById(id);

  function bytes(base64) {
    const text = atob(base64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  const codes = bytes(data.codes);
  const low = new Float32Array(bytes(data.low).buffer); // little-endian float32, as every browser's platform
  const high = new Float32Array(bytes(data.high).buffer);
  const pixels = bytes(data.pixels); // (images, H, W, 3) uint8
  const colours = data.colours; // 256 x RGB in [0, 1]

  // --- the shapes: maps per image in the order of vitnb.explorer.encode ---------------------------------
  const [gh, gw] = data.grid, P = gh * gw, L = data.blocks, H = data.heads, R = H + 2, Q = data.queries;
  const C = data.classes.length, perImage = L * R * Q + L * Q + C;
  const [ih, iw] = data.image_size, S = data.scale, DW = iw * S, DH = ih * S;
  // image pixel -> patch row / column: torch's F.interpolate(mode="nearest-exact"), as upsampled_heat
  const rowOf = Array.from({ length: ih }, (_, y) => Math.min(gh - 1, Math.floor(((y + 0.5) * gh) / ih)));
  const colOf = Array.from({ length: iw }, (_, x) => Math.min(gw - 1, Math.floor(((x + 0.5) * gw) / iw)));
  const gridRows = Array.from({ length: gh - 1 }, (_, r) => Math.floor(((r + 1) * DH) / gh));
  const gridCols = Array.from({ length: gw - 1 }, (_, c) => Math.floor(((c + 1) * DW) / gw));

  const state = { image: 0, kind: "rollout", block: L - 1, head: H, query: 0, target: -1, opacity: 0.6 };
  const controls = ["image", "kind", "block", "head", "query", "target", "opacity"];
  const el = Object.fromEntries(controls.map((name) => [name, $(name)]));
  // updates drawn; the last one's handler time, and the time from its input event to the end of its handler
  const api = { updates: 0, lastUpdateMs: 0, lastEventMs: 0 };

  // --- names ------------------------------------------------------------------------------------------
  function tokenName(t) {
    if (t < data.prefix) return t === 0 ? "cls" : "prefix " + t;
    const p = t - data.prefix;
    return "patch (" + Math.floor(p / gw) + ", " + (p % gw) + ")";
  }
  const queryName = (q) => (q === 0 ? data.pooled : tokenName(q - 1));
  const headName = (h) => (h < H ? "head " + h : h === H ? "mean" : "max");
  const target = () => (state.target < 0 ? data.images[state.image].prediction : state.target);
  function fmt(x) {
    return String(Number(x.toPrecision(3))); // 3 significant digits, as Python's :.3g
  }
  function option(select, value, text) {
    const o = document.createElement("option");
    o.value = String(value);
    o.textContent = text;
    select.appendChild(o);
  }

  // --- the map --------------------------------------------------------------------------------------------
  function mapIndex() {
    const base = state.image * perImage;
    if (state.kind === "raw") return base + (state.block * R + state.head) * Q + state.query;
    if (state.kind === "rollout") return base + L * R * Q + state.block * Q + state.query;
    return base + L * R * Q + L * Q + target();
  }
  function currentMap() {
    const m = mapIndex(), lo = low[m], span = high[m] - low[m];
    return Array.from(codes.subarray(m * P, (m + 1) * P), (c) => lo + (c * span) / 255);
  }

  // --- drawing: render_overlay's rules --------------------------------------------------------------------
  function context(canvas, width, height) {
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    return canvas.getContext("2d");
  }
  const inputCtx = context($("input"), DW, DH), overlayCtx = context($("overlay"), DW, DH);
  const overlayPixels = overlayCtx.createImageData(DW, DH), inputPixels = inputCtx.createImageData(DW, DH);
  const mixed = new Uint8ClampedArray(ih * iw * 3);

  function upscale(small, target) {
    // repeat each image pixel S x S times (crisp blocks, no smoothing)
    const out = target.data;
    for (let y = 0; y < DH; y++) {
      const row = ((y / S) | 0) * iw;
      for (let x = 0; x < DW; x++) {
        const s = (row + ((x / S) | 0)) * 3, o = (y * DW + x) * 4;
        out[o] = small[s];
        out[o + 1] = small[s + 1];
        out[o + 2] = small[s + 2];
        out[o + 3] = 255;
      }
    }
  }
  function drawInput() {
    upscale(pixels.subarray(state.image * ih * iw * 3, (state.image + 1) * ih * iw * 3), inputPixels);
    inputCtx.putImageData(inputPixels, 0, 0);
  }
  function queryBox() {
    // (top, left, height, width) in display pixels of the query's patch, or null (pooled, cls, gradient rollout)
    const t = state.query - 1 - data.prefix;
    if (state.kind === "gradient" || t < 0) return null;
    const ph = Math.floor(ih / gh), pw = Math.floor(iw / gw), r = Math.floor(t / gw), c = t % gw;
    return [r * ph * S, c * pw * S, ph * S, pw * S];
  }
  function drawOverlay() {
    const m = mapIndex(), heat = codes.subarray(m * P, (m + 1) * P), a = state.opacity;
    const image = pixels.subarray(state.image * ih * iw * 3, (state.image + 1) * ih * iw * 3);
    for (let y = 0; y < ih; y++) {
      for (let x = 0; x < iw; x++) {
        const s = (y * iw + x) * 3, level = heat[rowOf[y] * gw + colOf[x]] * 3;
        for (let k = 0; k < 3; k++) {
          // codes are the min-max scaled map on 256 levels: the colour index itself
          const v = a > 0 ? (1 - a) * (image[s + k] / 255) + a * colours[level + k] : image[s + k] / 255;
          mixed[s + k] = Math.floor(v * 255 + 0.5);
        }
      }
    }
    upscale(mixed, overlayPixels);
    const out = overlayPixels.data;
    for (const y of gridRows) for (let x = 0; x < DW; x++) halve(out, (y * DW + x) * 4);
    for (const x of gridCols) for (let y = 0; y < DH; y++) halve(out, (y * DW + x) * 4);
    const box = queryBox();
    if (box) frame(out, box, Math.max(1, Math.floor(S / 4)));
    overlayCtx.putImageData(overlayPixels, 0, 0);
  }
  function halve(out, o) {
    out[o] >>= 1;
    out[o + 1] >>= 1;
    out[o + 2] >>= 1;
  }
  function frame(out, [top, left, height, width], t) {
    for (let y = top; y < Math.min(top + height, DH); y++) {
      for (let x = left; x < Math.min(left + width, DW); x++) {
        const inside = y >= top + t && y < top + height - t && x >= left + t && x < left + width - t;
        if (inside) continue;
        const o = (y * DW + x) * 4;
        out[o] = 0;
        out[o + 1] = 255;
        out[o + 2] = 255;
      }
    }
  }
  function drawColorbar() {
    const ctx = context($("bar"), 12, DH), bar = ctx.createImageData(12, DH);
    for (let y = 0; y < DH; y++) {
      const level = DH > 1 ? 1 - y / (DH - 1) : 1, c = Math.floor(level * 255 + 0.5) * 3;
      for (let x = 0; x < 12; x++) {
        const o = (y * 12 + x) * 4;
        for (let k = 0; k < 3; k++) bar.data[o + k] = Math.floor(colours[c + k] * 255 + 0.5);
        bar.data[o + 3] = 255;
      }
    }
    ctx.putImageData(bar, 0, 0);
  }

  // --- texts ----------------------------------------------------------------------------------------------
  function predictionHtml() {
    const im = data.images[state.image], name = (c) => escapeHtml(data.classes[c]);
    const right = im.label === null || im.label === im.prediction;
    const true_ = im.label === null ? "?" : name(im.label);
    const order = im.probabilities.map((p, c) => [p, c]).sort((x, y) => y[0] - x[0]).slice(0, 3);
    const top = order.map(([p, c]) => name(c) + " " + Math.round(p * 100) + "%").join(", ");
    return (
      "true: <b>" + true_ + "</b> &nbsp; predicted: <b class='" + (right ? "right" : "wrong") + "'>" +
      name(im.prediction) + "</b> (" + Math.round(im.probabilities[im.prediction] * 100) + "%)" +
      "<br><span class='top'>top 3: " + top + "</span>"
    );
  }
  function statusHtml(values) {
    let what;
    if (state.kind === "gradient") {
      what = "gradient rollout for class <b>" + escapeHtml(data.classes[target()]) + "</b> (all blocks, read at: " + data.pooled + ")";
    } else if (state.kind === "rollout") {
      what = "rollout through blocks 0-" + state.block + ", row of the " + queryName(state.query) + " token";
    } else {
      const heads = state.head < H ? "head " + state.head : headName(state.head) + " over heads";
      what = "block " + state.block + ", " + heads + ", attention of the " + queryName(state.query) + " token";
    }
    let best = 0;
    values.forEach((v, i) => { if (v > values[best]) best = i; });
    return (
      what + "<br>" + gh + "x" + gw + " patch grid, brightest patch (" + Math.floor(best / gw) + ", " + (best % gw) +
      "), weights " + fmt(Math.min(...values)) + "-" + fmt(Math.max(...values)) + " (display is min-max scaled)"
    );
  }
  function escapeHtml(text) {
    const d = document.createElement("div");
    d.textContent = text;
    return d.innerHTML;
  }

  // --- updates --------------------------------------------------------------------------------------------
  function update(imageChanged, event) {
    const start = performance.now();
    const gradient = state.kind === "gradient";
    el.block.disabled = el.query.disabled = $("pooled").disabled = gradient;
    el.head.disabled = state.kind !== "raw";
    el.target.disabled = !gradient;
    $("overlay").classList.toggle("no-query", gradient);
    $("pooled").classList.toggle("active", state.query === 0 && !gradient);
    $("block-value").textContent = String(state.block);
    $("opacity-value").textContent = state.opacity.toFixed(2);
    el.query.value = String(state.query);
    if (imageChanged) {
      drawInput();
      $("prediction").innerHTML = predictionHtml();
      el.target.options[0].textContent = "predicted: " + data.classes[data.images[state.image].prediction];
    }
    const m = mapIndex(), values = currentMap();
    $("bar-max").textContent = fmt(high[m]);
    $("bar-min").textContent = fmt(low[m]);
    $("status").innerHTML = statusHtml(values);
    $("overlay").dataset.map = String(m);
    drawOverlay();
    const end = performance.now();
    api.updates += 1;
    api.lastUpdateMs = end - start;
    api.lastEventMs = event ? end - event.timeStamp : api.lastUpdateMs;
  }
  function read() {
    state.image = Number(el.image.value);
    state.kind = el.kind.value;
    state.block = Number(el.block.value);
    state.head = Number(el.head.value);
    state.query = Number(el.query.value);
    state.target = Number(el.target.value);
    state.opacity = Number(el.opacity.value);
  }
  function onControl(event) {
    const imageChanged = Number(el.image.value) !== state.image;
    read();
    update(imageChanged, event);
  }
  function onClick(event) {
    if (state.kind === "gradient") return; // the gradient rollout has no query
    const rect = event.currentTarget.getBoundingClientRect();
    const x = Math.floor(((event.clientX - rect.left) * DW) / rect.width / S);
    const y = Math.floor(((event.clientY - rect.top) * DH) / rect.height / S);
    if (x < 0 || y < 0 || x >= iw || y >= ih) return;
    state.query = 1 + data.prefix + rowOf[y] * gw + colOf[x];
    update(false, event);
  }

  // --- set up -----------------------------------------------------------------------------------------
  function setUp() {
    data.images.forEach((im, i) => {
      const label = im.label === null ? "" : ": " + data.classes[im.label];
      option(el.image, i, "#" + im.index + label);
    });
    el.block.max = String(L - 1);
    for (let h = 0; h < R; h++) option(el.head, h, headName(h));
    option(el.query, 0, "pooled: " + data.pooled);
    for (let t = 0; t < data.tokens; t++) option(el.query, t + 1, tokenName(t));
    option(el.target, -1, "predicted");
    data.classes.forEach((name, c) => option(el.target, c, name));
    $("pooled").textContent = "pooled: " + data.pooled;
    const shown = data.images.length + " " + (data.source ? data.source + " " : "") + "images";
    $("about").textContent =
      data.model + "; " + shown + " (numbered as in their data set). Choose a map and a block, click a patch to see its attention row, or pick a class for the " +
      "gradient rollout. Everything is precomputed: the page needs no Python and no network.";
    $("note").textContent =
      "Raw attention: one block's attention row of the query (a head, or the heads' mean or max). Rollout: the " +
      "attention rolled out through blocks 0 to the chosen one (heads averaged, residual added). Gradient rollout: " +
      "each block weighted by its gradient for the class, through all blocks. Maps from vitnb.maps; each stored " +
      "with 8 bits over its own range (largest error here " + (100 * data.error).toFixed(3) + "% of a map's range).";
    for (const name of controls) {
      el[name].value = String(state[name]);
      el[name].addEventListener(name === "block" || name === "opacity" ? "input" : "change", onControl);
    }
    $("pooled").addEventListener("click", (event) => { state.query = 0; update(false, event); });
    $("input").addEventListener("click", onClick);
    $("overlay").addEventListener("click", onClick);
    drawColorbar();
    update(true);
  }

  api.data = data; // the payload (vitnb.explorer.encode), as read from the page
  api.state = () => Object.assign({}, state);
  api.currentMap = currentMap;
  api.mapIndex = mapIndex;
  window.vitnbExplorer = api; // for tests and for readers poking at the numbers from the console
  setUp();
})();
