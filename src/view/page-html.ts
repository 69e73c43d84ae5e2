/**
 * The live page at `/` of the metrics bind (docs/live-view.md): a shell that loads uPlot and
 * the page's module (`web/page.ts`, compiled to `dist/`) from the same bind; nothing from
 * elsewhere. Everything it shows it draws from `GET /view.json`.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prefork: live</title>
<link rel="stylesheet" href="/ui/uplot.css">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1d1d1f; background: #fff; }
  h1 { font-size: 18px; margin: 0 0 4px; }
  h2 { font-size: 15px; margin: 18px 0 4px; }
  #state { color: #555; margin-bottom: 8px; }
  #deploy { font-weight: 600; min-height: 1.4em; }
  #deploy.idle { font-weight: 400; color: #555; }
  table { border-collapse: collapse; margin-top: 6px; }
  th, td { text-align: left; padding: 2px 10px 2px 0; font-variant-numeric: tabular-nums; }
  th { font-weight: 600; border-bottom: 1px solid #ccc; }
  td.num { text-align: right; }
  tr.gone td { color: #999; }
  .charts { display: flex; flex-wrap: wrap; gap: 8px 24px; }
  .error { color: #b00020; }
</style>
</head>
<body>
<h1>prefork <span id="root"></span></h1>
<div id="state">connecting…</div>
<div id="deploy" class="idle"></div>
<table id="generations"><thead><tr><th>master</th><th>state</th><th>release</th><th>workers</th><th class="num">req/s</th><th class="num">5xx</th><th class="num">p99</th><th>connections</th><th>drain</th></tr></thead><tbody></tbody></table>
<div class="charts">
  <div><h2>Requests per second, by release</h2><div id="chart-rate"></div></div>
  <div><h2>p99 latency (ms), by release</h2><div id="chart-p99"></div></div>
  <div><h2>Workers, by generation</h2><div id="chart-workers"></div></div>
</div>
<script src="/ui/uplot.js"></script>
<script type="module" src="/ui/view/web/page.js"></script>
</body>
</html>
`;
