/**
 * The web page of `halfstep serve` (GET /): pick a tier, generate on the server, see the latency; and
 * run the fastest unrolled sampler in the browser itself with onnxruntime-web (WebGPU where the
 * browser has an adapter, WebAssembly otherwise), from the same noise as the server (POST /v1/noise),
 * showing both timings and the largest difference between the two results.
 * Self-contained: no external resources; onnxruntime-web is served by the server under /ort/.
 * The script avoids template literals, since it lives inside one.
 */
export function pageHtml(): string {
  return PAGE;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>halfstep serve</title>
<style>
  :root { font-family: system-ui, "DejaVu Sans", sans-serif; color: #222; }
  body { max-width: 980px; margin: 1.5rem auto; padding: 0 1rem; }
  h1 { font-size: 1.4rem; margin-bottom: 0.2rem; }
  h2 { font-size: 1.05rem; margin: 0 0 0.6rem; }
  .muted { color: #666; font-size: 0.9rem; }
  section { border: 1px solid #ddd; border-radius: 6px; padding: 0.8rem 1rem; margin: 1rem 0; }
  .row { display: flex; flex-wrap: wrap; gap: 0.8rem; align-items: center; margin-bottom: 0.6rem; }
  .tiers label { border: 1px solid #bbb; border-radius: 4px; padding: 0.25rem 0.6rem; cursor: pointer; }
  .tiers input { margin-right: 0.3rem; }
  input[type=number] { width: 5.5rem; }
  button { padding: 0.35rem 0.9rem; cursor: pointer; }
  .out { display: flex; gap: 1rem; flex-wrap: wrap; align-items: flex-start; }
  figure { margin: 0; }
  figcaption { font-size: 0.85rem; color: #555; margin-bottom: 0.3rem; }
  img, canvas { border: 1px solid #eee; image-rendering: pixelated; max-width: 100%; }
  table { border-collapse: collapse; font-size: 0.9rem; width: 100%; }
  th, td { text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid #eee; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>halfstep serve</h1>
<p class="muted" id="summary">loading models…</p>

<section id="server">
  <h2>Generate on the server</h2>
  <div class="row tiers" id="tiers"></div>
  <div class="row">
    <label>samples <input id="n" type="number" min="1" value="16"></label>
    <label>seed <input id="seed" type="number" min="0" value="0"></label>
    <button id="generate" disabled>Generate</button>
    <span id="server-status" class="muted"></span>
  </div>
  <div class="out"><figure><figcaption id="server-caption"></figcaption><img id="server-image" alt="" hidden><canvas id="server-canvas" hidden></canvas></figure></div>
</section>

<section id="browser">
  <h2>Run in this browser</h2>
  <div class="row">
    <span id="browser-model" class="muted"></span>
    <label>runtime <select id="ep"><option value="auto">auto</option><option value="webgpu">WebGPU</option><option value="wasm">WebAssembly</option></select></label>
    <button id="run-browser" disabled>Run in browser</button>
    <span id="browser-status" class="muted"></span>
  </div>
  <div class="out"><figure><figcaption id="browser-caption"></figcaption><canvas id="browser-canvas" hidden></canvas></figure></div>
</section>

<section>
  <h2>Timings</h2>
  <table>
    <thead><tr><th>where</th><th>tier</th><th>n</th><th>seed</th><th class="num">round trip ms</th><th class="num">server ms</th><th class="num">queue ms</th><th class="num">inference ms</th><th>note</th></tr></thead>
    <tbody id="timings"></tbody>
  </table>
</section>

<script type="module">
const $ = (id) => document.getElementById(id);
let info = null;
let browserModel = null;
const sessions = new Map();
let ort = null;

function fmt(x) { return x === null || x === undefined || Number.isNaN(x) ? '' : Number(x).toFixed(2); }
function selectedTier() { const r = document.querySelector('input[name=tier]:checked'); return r ? r.value : null; }
function modelOfTier(t) { return info.models.find((m) => m.tier === t) || null; }

function addTiming(where, tier, n, seed, rtt, server, queue, infer, note) {
  const tr = document.createElement('tr');
  const cells = [where, tier, String(n), String(seed), fmt(rtt), fmt(server), fmt(queue), fmt(infer), note || ''];
  cells.forEach((c, i) => { const td = document.createElement('td'); td.textContent = c; if (i >= 4 && i <= 7) td.className = 'num'; tr.appendChild(td); });
  $('timings').prepend(tr);
}

async function errorText(res) {
  try { const j = await res.json(); return res.status + ' ' + j.error + (j.field ? ' (' + j.field + ')' : '') + ': ' + j.message; } catch { return 'HTTP ' + res.status; }
}

/** Draw samples [n, ...shape] in [lo, hi]: images as a grid, 2D points as a scatter plot. */
function draw(canvas, values, n, shape, range) {
  const lo = range[0], hi = range[1];
  const ctx = canvas.getContext('2d');
  if (shape.length === 3) {
    const H = shape[0], W = shape[1], C = shape[2], scale = 3, pad = 1;
    const cols = Math.min(16, Math.max(1, Math.ceil(Math.sqrt(n)))), rows = Math.ceil(n / cols);
    canvas.width = cols * (W * scale + pad) + pad; canvas.height = rows * (H * scale + pad) + pad;
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    for (let k = 0; k < n; k++) {
      const oy = pad + Math.floor(k / cols) * (H * scale + pad), ox = pad + (k % cols) * (W * scale + pad);
      for (let y = 0; y < H * scale; y++) for (let x = 0; x < W * scale; x++) {
        const src = ((k * H + Math.floor(y / scale)) * W + Math.floor(x / scale)) * C;
        const dst = ((oy + y) * canvas.width + ox + x) * 4;
        for (let c = 0; c < 3; c++) {
          const v = (values[src + (C === 1 ? 0 : c)] - lo) / (hi - lo);
          img.data[dst + c] = Math.max(0, Math.min(255, Math.round(v * 255)));
        }
        img.data[dst + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  } else {
    const S = 440, D = shape.reduce((a, b) => a * b, 1);
    canvas.width = S; canvas.height = S;
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, S, S);
    ctx.strokeStyle = '#ddd'; ctx.strokeRect(0.5, 0.5, S - 1, S - 1);
    // axes through 0 and the data range at the corners, like the server's plot
    const px = (v) => (v - lo) / (hi - lo) * (S - 8) + 4;
    if (lo < 0 && hi > 0) { ctx.beginPath(); ctx.moveTo(px(0), 0); ctx.lineTo(px(0), S); ctx.moveTo(0, S - px(0)); ctx.lineTo(S, S - px(0)); ctx.stroke(); }
    ctx.fillStyle = '#666'; ctx.font = '11px sans-serif';
    ctx.fillText(lo.toFixed(2), 4, S - 4); ctx.fillText(hi.toFixed(2), S - 34, 12);
    ctx.fillStyle = 'rgba(76, 120, 168, 0.6)';
    for (let i = 0; i < n; i++) {
      const x = (values[i * D] - lo) / (hi - lo) * (S - 8) + 4;
      const y = S - ((values[i * D + 1] - lo) / (hi - lo) * (S - 8) + 4);
      ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
    }
  }
  canvas.hidden = false;
}

async function loadModels() {
  const res = await fetch('/v1/models');
  info = await res.json();
  const tiers = $('tiers');
  info.models.forEach((m, i) => {
    const label = document.createElement('label');
    const r = document.createElement('input');
    r.type = 'radio'; r.name = 'tier'; r.value = m.tier; r.id = 'tier-' + m.tier; r.checked = i === 0;
    label.appendChild(r);
    label.appendChild(document.createTextNode(m.tier + (m.aliases.length ? ' · ' + m.aliases.join(', ') : '')));
    label.title = m.id + ' (' + m.kind + ' graph), dataset ' + m.dataset;
    tiers.appendChild(label);
  });
  $('n').max = String(info.limits.max_n);
  $('n').value = String(Math.min(info.limits.max_n, Number($('n').value)));
  const first = info.models[0];
  $('summary').textContent = info.models.length + (info.models.length === 1 ? ' model' : ' models') + ' from dataset ' + first.dataset + ', samples shaped [' + first.data_shape.join(', ') +
    '] · batching ' + (info.limits.batching ? 'up to ' + info.limits.max_batch_size + ' samples' + (info.limits.max_wait_ms > 0 ? ' or ' + info.limits.max_wait_ms + ' ms' : '') : 'off') + ' · halfstep ' + info.version;
  $('generate').disabled = false;
  browserModel = info.models.find((m) => m.kind === 'sampler') || null;
  if (!info.browser_runtime) $('browser-model').textContent = 'onnxruntime-web is not installed on this server.';
  else if (!browserModel) $('browser-model').textContent = 'no unrolled sampler graph to run here.';
  else { $('browser-model').textContent = browserModel.id + ' (' + browserModel.tier + ', unrolled sampler)'; $('run-browser').disabled = false; }
}

async function generate() {
  const tier = selectedTier(), m = modelOfTier(tier);
  const n = Number($('n').value), seed = Number($('seed').value);
  const png = m.formats.includes('png');
  $('server-status').textContent = 'generating…'; $('server-status').className = 'muted';
  const t0 = performance.now();
  const res = await fetch('/v1/generate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tier, n, seed, format: png ? 'png' : 'json' }) });
  if (!res.ok) { $('server-status').textContent = await errorText(res); $('server-status').className = 'error'; return; }
  const h = (k) => res.headers.get('x-halfstep-' + k);
  if (png) {
    const blob = await res.blob();
    const img = $('server-image');
    await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = URL.createObjectURL(blob); });
    img.hidden = false; $('server-canvas').hidden = true;
  } else {
    const j = await res.json();
    draw($('server-canvas'), new Float32Array(j.data), n, m.data_shape, m.range);
    $('server-image').hidden = true;
  }
  const rtt = performance.now() - t0;
  $('server-caption').textContent = h('model') + ': ' + h('steps') + ' step(s), n ' + n + ', seed ' + h('seed') + ' · ' + fmt(rtt) + ' ms round trip';
  $('server-status').textContent = 'done in ' + fmt(rtt) + ' ms (server ' + h('latency-ms') + ' ms, batch of ' + h('batch-size') + ')';
  addTiming('server', tier, n, seed, rtt, Number(h('latency-ms')), Number(h('queue-ms')), Number(h('inference-ms')), 'batch ' + h('batch-size') + ' samples / ' + h('batch-requests') + ' requests');
}

async function chooseEp() {
  const want = $('ep').value;
  if (want !== 'auto') return want;
  try { if (navigator.gpu && (await navigator.gpu.requestAdapter())) return 'webgpu'; } catch { /* no adapter */ }
  return 'wasm';
}

async function runInBrowser() {
  const m = browserModel;
  const n = Number($('n').value), seed = Number($('seed').value);
  $('browser-status').className = 'muted';
  try {
    $('browser-status').textContent = 'loading onnxruntime-web…';
    if (!ort) {
      ort = await import(info.browser_runtime);
      ort.env.wasm.wasmPaths = '/ort/';
      ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    }
    const ep = await chooseEp();
    let created = 0;
    if (!sessions.has(ep)) {
      $('browser-status').textContent = 'creating a ' + ep + ' session…';
      const c0 = performance.now();
      sessions.set(ep, await ort.InferenceSession.create(m.browser_onnx_url, { executionProviders: [ep] }));
      created = performance.now() - c0;
    }
    const session = sessions.get(ep);
    const nres = await fetch('/v1/noise', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tier: m.tier, n, seed }) });
    if (!nres.ok) throw new Error(await errorText(nres));
    const noise = new Float32Array(await nres.arrayBuffer());
    const feeds = { noise: new ort.Tensor('float32', noise, [n].concat(m.data_shape)) };
    $('browser-status').textContent = 'running…';
    const w0 = performance.now();
    await session.run(feeds); // warm-up: the first run compiles shaders / allocates
    const warm = performance.now() - w0;
    const t0 = performance.now();
    const out = await session.run(feeds);
    const ms = performance.now() - t0;
    const values = out.sample.data;
    draw($('browser-canvas'), values, n, m.data_shape, m.range);
    // the same request on the server, for comparison
    const sres = await fetch('/v1/generate', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tier: m.tier, n, seed, format: 'json' }) });
    let note = ep + (ep === 'wasm' ? ', ' + ort.env.wasm.numThreads + ' thread(s)' : '') + '; first run ' + fmt(warm) + ' ms' + (created ? ', session ' + fmt(created) + ' ms' : '');
    if (sres.ok) {
      const j = await sres.json();
      let d = 0;
      for (let i = 0; i < values.length; i++) d = Math.max(d, Math.abs(values[i] - j.data[i]));
      note += '; max |browser − server| ' + d.toExponential(2);
      addTiming('server (json)', m.tier, n, seed, null, Number(sres.headers.get('x-halfstep-latency-ms')), Number(sres.headers.get('x-halfstep-queue-ms')), Number(sres.headers.get('x-halfstep-inference-ms')), 'same request on the server');
    }
    $('browser-caption').textContent = m.id + ' in this browser (' + ep + '): ' + fmt(ms) + ' ms';
    $('browser-status').textContent = 'done: ' + fmt(ms) + ' ms on ' + ep;
    $('browser-status').dataset.ep = ep;
    addTiming('browser (' + ep + ')', m.tier, n, seed, null, null, null, ms, note);
  } catch (e) {
    $('browser-status').textContent = 'failed: ' + (e && e.message ? e.message : String(e));
    $('browser-status').className = 'error';
  }
}

$('generate').addEventListener('click', () => generate().catch((e) => { $('server-status').textContent = String(e); $('server-status').className = 'error'; }));
$('run-browser').addEventListener('click', () => runInBrowser());
loadModels().catch((e) => { $('summary').textContent = 'could not load /v1/models: ' + e; $('summary').className = 'error'; });
</script>
</body>
</html>
`;
