/**
 * `GET /canary`: one self-contained page (no CDN, no external URL: inline style, inline script,
 * an inline SVG chart) that polls `/canary/status` every second and turns red on a rollback.
 */
export function statusPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Relay canary</title>
<style>
  :root { --ok: #1b7f3b; --warn: #b26a00; --bad: #b3261e; --mute: #666; }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #f6f7f9; }
  header { padding: 16px 24px; color: #fff; background: #345; }
  body.status-running header, body.status-promoted header { background: var(--ok); }
  body.status-paused header { background: var(--warn); }
  body.status-rolled_back, body.status-aborted { background: #fdecea; }
  body.status-rolled_back header, body.status-aborted header { background: var(--bad); }
  h1 { margin: 0; font-size: 20px; }
  main { padding: 16px 24px; display: grid; gap: 16px; max-width: 1100px; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
  .v-pass { color: var(--ok); } .v-warn { color: var(--warn); } .v-fail { color: var(--bad); font-weight: bold; } .v-insufficient_data { color: var(--mute); }
  .mute { color: var(--mute); }
  svg { width: 100%; height: 220px; background: #fff; }
</style>
</head>
<body class="status-loading">
<header><h1 id="headline">Relay canary: loading…</h1><div id="summary"></div></header>
<main>
  <section id="reason-box" hidden><h2>Why</h2><div id="reason"></div></section>
  <section><h2>Guardrails</h2><table id="guardrails"><thead><tr><th>guardrail</th><th>candidate (stage)</th><th>last interval</th><th>stable</th><th>threshold</th><th>samples</th><th>verdict</th></tr></thead><tbody></tbody></table>
  <div id="warnings" class="mute"></div></section>
  <section><h2>TTFV p95 and SSE success over the run</h2><svg id="chart" viewBox="0 0 1000 220" preserveAspectRatio="none" role="img" aria-label="chart of TTFV p95 and SSE success"></svg>
  <div class="mute"><span style="color:#1f5fbf">■</span> TTFV p95 (s, left) <span style="color:#8a3ffc">■</span> SSE success (right, 99–100%) <span style="color:#b3261e">┊</span> TTFV threshold</div></section>
  <section><h2>Decisions</h2><table id="decisions"><thead><tr><th>when</th><th>action</th><th>stage</th><th>weight</th><th>reason</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  const text = (v) => (v === null || v === undefined ? '–' : String(v));
  const cell = (row, value, cls) => { const td = row.insertCell(); td.textContent = text(value); if (cls) td.className = cls; return td; };
  const dur = (ms) => { const s = Math.round(ms / 1000); return s >= 3600 ? (s / 3600).toFixed(1) + ' h' : s >= 60 ? Math.round(s / 60) + ' min' : s + ' s'; };
  const NS = 'http://www.w3.org/2000/svg';
  function line(svg, points, color, dashed) {
    if (points.length === 0) return;
    const p = document.createElementNS(NS, 'polyline');
    p.setAttribute('points', points.map(([x, y]) => x.toFixed(1) + ',' + y.toFixed(1)).join(' '));
    p.setAttribute('fill', 'none'); p.setAttribute('stroke', color); p.setAttribute('stroke-width', '2');
    if (dashed) p.setAttribute('stroke-dasharray', '6 4');
    svg.appendChild(p);
  }
  function chart(s) {
    const svg = $('chart');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = s.chart;
    const threshold = (s.report && s.report.guardrails.find((g) => g.name === 'ttfv_p95') || {}).threshold || 1.5;
    const maxT = Math.max(threshold * 1.2, ...pts.map((p) => p.ttfvP95 || 0));
    const x = (i) => (pts.length <= 1 ? 500 : 10 + (i * 980) / (pts.length - 1));
    const yT = (v) => 210 - (v / maxT) * 200;
    const yS = (v) => 210 - Math.max(0, (v - 0.99) / 0.01) * 200;
    line(svg, [[0, yT(threshold)], [1000, yT(threshold)]], '#b3261e', true);
    line(svg, pts.map((p, i) => [x(i), p.ttfvP95]).filter(([, v]) => v !== null).map(([a, v]) => [a, yT(v)]), '#1f5fbf');
    line(svg, pts.map((p, i) => [x(i), p.sseSuccess]).filter(([, v]) => v !== null).map(([a, v]) => [a, yS(v)]), '#8a3ffc');
  }
  function render(s) {
    document.body.className = 'status-' + s.status;
    document.body.dataset.status = s.status;
    $('headline').textContent = 'Relay canary: ' + s.status.replace('_', ' ') + ' · stage ' + s.stage + ' of ' + s.stages.length + ' · weight ' + (s.weight === null ? 'not confirmed' : s.weight + '%') + (s.traffic && s.traffic.layer !== 'builtin' ? ' (' + s.traffic.layer + (s.traffic.error ? ': ' + s.traffic.error : '') + ')' : '');
    $('summary').textContent = s.targets.candidate.release + ' against ' + s.targets.stable.release +
      ' · observed ' + dur(s.observed_ms) + ', ' + dur(s.time_left_ms) + ' left in this stage' + (s.cooldown_until ? ' · no retry before ' + s.cooldown_until : '');
    const ending = s.rollback || (s.status === 'promoted' ? s.promotion : null);
    $('reason-box').hidden = !ending;
    if (ending) $('reason').textContent = ending.reason + ' — hooks: ' + (ending.hooks.map((h) => h.name + (h.skipped ? ' skipped' : h.exitCode === 0 ? ' ok' : h.timedOut ? ' timed out' : ' exit ' + h.exitCode)).join(', ') || 'none');
    const tbody = $('guardrails').tBodies[0];
    tbody.replaceChildren();
    // Rows formatted by the controller (format.ts): every value with its unit.
    for (const g of (s.guardrail_rows || [])) {
      const r = tbody.insertRow();
      r.dataset.guardrail = g.name;
      cell(r, g.name); cell(r, g.candidate); cell(r, g.lastInterval); cell(r, g.stable); cell(r, g.threshold); cell(r, g.samples);
      cell(r, g.verdict.replace('_', ' '), 'v-' + g.verdict).title = g.why;
    }
    $('warnings').textContent = s.report && s.report.warnings.length ? 'Warnings: ' + s.report.warnings.join(' · ') : '';
    chart(s);
    const dbody = $('decisions').tBodies[0];
    dbody.replaceChildren();
    for (const d of [...s.decisions].reverse()) {
      const r = dbody.insertRow();
      cell(r, d.at.replace('T', ' ').slice(0, 19)); cell(r, d.action, d.action === 'rollback' || d.action === 'abort' ? 'v-fail' : ''); cell(r, d.stage); cell(r, d.weight + '%'); cell(r, d.reason);
    }
  }
  async function poll() {
    try {
      const res = await fetch('/canary/status', { cache: 'no-store' });
      if (res.ok) render(await res.json());
    } catch (e) {
      $('summary').textContent = 'controller unreachable: ' + e.message;
    }
    setTimeout(poll, 1000);
  }
  poll();
})();
</script>
</body>
</html>
`;
}
