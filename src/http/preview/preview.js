// The preview page's script: corrects the addresses the server filled in from the Host
// header with what the browser really used (scheme, port, a proxy's prefix), copies the
// snippet, and shows /state once a second. No framework, nothing external; without it the
// page still shows the stream and the snippet.
'use strict';

(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 3000;
  const $ = (id) => document.getElementById(id);

  // This page's directory without user info (location.origin never has any, and fetch refuses
  // URLs with credentials): right behind a proxy that strips a prefix such as /cam/.
  const base = location.origin + location.pathname.replace(/[^/]*$/, '');

  for (const el of document.querySelectorAll('.stream-url')) el.textContent = base + 'stream.mjpg';
  for (const el of document.querySelectorAll('.origin')) el.textContent = base.replace(/\/$/, '');

  const copy = $('copy');
  copy.hidden = false;
  copy.addEventListener('click', async () => {
    const text = $('snippet').textContent;
    const done = (msg) => { $('copied').textContent = msg; };
    try {
      // Only in a secure context (https, localhost); a Pi's plain http address is not one.
      if (!navigator.clipboard) throw new Error('no clipboard API');
      await navigator.clipboard.writeText(text);
      done('Copied.');
    } catch (e) {
      const range = document.createRange();
      range.selectNodeContents($('snippet'));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      let ok = false;
      try { ok = document.execCommand('copy'); } catch (e2) { ok = false; }
      done(ok ? 'Copied.' : 'Selected: press Ctrl+C to copy.');
    }
  });

  const fmtSize = (s) => s ? `${s.width}x${s.height} ${String(s.format).toUpperCase()}` : '–';
  const fmtValue = (v) => (typeof v === 'number' ? String(Math.round(v * 1000) / 1000)
    : typeof v === 'string' ? v : JSON.stringify(v));

  function fmtCrop(c) {
    if (c === 'none') return ['not cropped (camera.crop = "none")', false];
    if (c === 'unsupported') return ['not applied: this camera has no crop control', false];
    if (c === 'pending') return ['asked for, not yet reported by the camera', false];
    if (c && c['not-square']) {
      const r = c['not-square'];
      return [`NOT SQUARE: ${r.width}x${r.height} at (${r.x},${r.y}): the picture is squashed`, true];
    }
    if (c && typeof c.width === 'number') return [`applied by the ISP: ${c.width}x${c.height} at (${c.x},${c.y})`, false];
    return [JSON.stringify(c), false];
  }

  function fmtControls(controls) {
    const keys = Object.keys(controls || {});
    if (keys.length === 0) return 'none set ([controls] in the config)';
    return keys.map((k) => {
      const r = controls[k] || {};
      let s = `${k} ${fmtValue(r.value)}`;
      if (r.status === 'adjusted') s += ` (asked ${fmtValue(r.asked)}: adjusted)`;
      else if (r.status === 'unsupported') s = `${k}: unsupported by this camera`;
      return s;
    }).join('; ');
  }

  function setBadge(cls, text, reason) {
    const b = $('st-badge');
    b.className = 'badge ' + cls;
    b.textContent = text;
    $('st-reason').textContent = reason || '';
  }

  function show(st) {
    if (st.online) setBadge('online', 'LIVE', '');
    else setBadge('offline', 'OFFLINE', st.offline_reason || 'no frames');
    $('st-fps').textContent = st.online ? `${Number(st.fps).toFixed(1)} fps` : '0 fps';
    $('st-clients').textContent = `${st.clients} watching the stream (this page is one)`;
    $('st-stream').textContent = fmtSize(st.stream) + ', sent as JPEG';
    $('st-still').textContent = fmtSize(st.still);
    const [crop, bad] = fmtCrop(st.crop);
    $('st-crop').textContent = crop;
    $('st-crop').className = bad ? 'warn' : '';
    $('st-controls').textContent = fmtControls(st.controls);
    $('st-camera').textContent = `${st.camera} (${st.source})` +
      (st.adjustments && st.adjustments.length ? `; ${st.adjustments.join('; ')}` : '');
  }

  let unreachable = false;
  async function poll() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const r = await fetch(base + 'state', { cache: 'no-store', credentials: 'same-origin', signal: abort.signal });
      if (!r.ok) throw new Error(`/state answered ${r.status}`);
      show(await r.json());
      if (unreachable) {
        // picker came back (a restart): an <img> never reconnects by itself. The query is a
        // cache buster, which picker ignores.
        $('stream').src = 'stream.mjpg?' + Date.now();
        unreachable = false;
      }
    } catch (e) {
      unreachable = true;
      setBadge('offline', 'UNREACHABLE', `picker does not answer (${e.name === 'AbortError' ? 'timed out' : e.message})`);
    } finally {
      clearTimeout(timer);
      setTimeout(poll, POLL_MS);
    }
  }

  $('status').hidden = false;
  poll();
})();
