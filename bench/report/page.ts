/**
 * results/index.html: the report (results/README.md) as a page to explore.
 * The same text and tables, and in place of each chart image the same chart
 * drawn live by ECharts from the option it was rendered from
 * (results/charts/<name>.json): hover for values, click the legend to toggle
 * series, drag to zoom. Links to every raw .hgrm file. It opens from the
 * file system with no server and no network: the options are inlined and
 * ECharts ships beside the page in results/assets/.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { marked } from 'marked';

const require = createRequire(import.meta.url);

/** Every .hgrm under the results folder (raw/ holds per-run copies and is not published), by folder. */
function histogramFiles(dir: string): Map<string, string[]> {
  const byFolder = new Map<string, string[]>();
  const walk = (relative: string) => {
    for (const entry of readdirSync(path.join(dir, relative), { withFileTypes: true })) {
      const child = path.posix.join(relative, entry.name);
      if (entry.isDirectory() && entry.name !== 'raw') walk(child);
      else if (entry.isFile() && entry.name.endsWith('.hgrm')) byFolder.set(relative, [...(byFolder.get(relative) ?? []), child]);
    }
  };
  walk('');
  return new Map([...byFolder].sort(([a], [b]) => a.localeCompare(b)).map(([folder, files]) => [folder, files.sort()]));
}

const escapeHtml = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Turns each chart image of the rendered report into a live chart where its
 * option exists (a chart from before options were kept stays an image).
 */
function liveCharts(html: string, chartsDir: string): { html: string; options: Record<string, unknown> } {
  const options: Record<string, unknown> = {};
  const image = /(?:<p>)?<img src="charts\/([A-Za-z0-9._-]+)\.png" alt="([^"]*)"\s*\/?>(?:<\/p>)?/g;
  const replaced = html.replace(image, (whole, name: string, alt: string) => {
    const file = path.join(chartsDir, `${name}.json`);
    if (!existsSync(file)) return whole;
    options[name] = JSON.parse(readFileSync(file, 'utf8'));
    return (
      `<figure class="chart"><div class="chart-canvas" data-chart="${name}" role="img" aria-label="${alt}"></div>` +
      `<noscript><img src="charts/${name}.png" alt="${alt}"></noscript>` +
      `<figcaption>${alt} · <a href="charts/${name}.svg">SVG</a> · <a href="charts/${name}.png">PNG</a></figcaption></figure>`
    );
  });
  return { html: replaced, options };
}

// Runs in the browser. Functions in an option were saved as their source.
const PAGE_SCRIPT = `
(function () {
  var drawn = [];
  window.outboxBenchCharts = drawn;
  var text = document.getElementById('chart-options').textContent;
  var options = JSON.parse(text, function (key, value) {
    return value && typeof value === 'object' && typeof value.$function === 'string' ? new Function('return (' + value.$function + ')')() : value;
  });
  var charts = [];
  document.querySelectorAll('[data-chart]').forEach(function (node) {
    var name = node.getAttribute('data-chart');
    var option = options[name];
    var chart = echarts.init(node, null, { renderer: 'canvas' });
    var xAxis = Array.isArray(option.xAxis) ? option.xAxis[0] : option.xAxis;
    var zoomable = xAxis && (xAxis.type === 'value' || xAxis.type === 'log');
    // Zoom by dragging a box (toolbox) or with the wheel; restore puts it back.
    var extra = {
      animation: true,
      toolbox: { right: 16, feature: Object.assign(zoomable ? { dataZoom: { filterMode: 'none' } } : {}, { restore: {}, saveAsImage: { name: name } }) },
      dataZoom: zoomable ? [{ type: 'inside', xAxisIndex: 0, filterMode: 'none' }] : []
    };
    chart.setOption(Object.assign({}, option, extra));
    charts.push(chart);
    var series = chart.getOption().series || [];
    drawn.push({ name: name, expectedSeries: (option.series || []).length, drawnSeries: series.length, points: series.reduce(function (n, s) { return n + ((s.data || []).length); }, 0) });
  });
  window.addEventListener('resize', function () { charts.forEach(function (c) { c.resize(); }); });
})();
`;

const STYLE = `
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; color: #1b1b1b; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.55rem; }
th { background: #f6f8fa; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
code, pre { background: #f6f8fa; border-radius: 4px; }
pre { padding: 0.75rem; overflow-x: auto; }
blockquote { border-left: 4px solid #d0d7de; margin: 1rem 0; padding: 0 1rem; color: #444; }
figure.chart { margin: 1.5rem 0; }
.chart-canvas { width: 100%; height: 540px; }
figcaption { font-size: 0.85rem; color: #555; text-align: center; }
`;

/** Writes results/index.html (and results/assets/) from results/README.md and results/charts/; returns the page. */
export function buildPage(dir: string): string {
  const markdown = readFileSync(path.join(dir, 'README.md'), 'utf8');
  const rendered = marked.parse(markdown, { async: false, gfm: true });
  const { html, options } = liveCharts(rendered, path.join(dir, 'charts'));
  const histograms = histogramFiles(dir);
  const raw = [
    '<h2 id="raw-histograms">Raw latency histograms</h2>',
    '<p>HdrHistogram percentile distributions (<code>.hgrm</code>, values in ms) of the published runs, by folder.</p>',
    ...[...histograms].map(([folder, files]) => `<h3>${escapeHtml(folder)}</h3><ul>${files.map((f) => `<li><a href="${escapeHtml(f)}">${escapeHtml(path.posix.basename(f))}</a></li>`).join('')}</ul>`),
  ].join('\n');
  const assets = path.join(dir, 'assets');
  mkdirSync(assets, { recursive: true });
  const echartsDir = path.dirname(require.resolve('echarts/package.json'));
  copyFileSync(path.join(echartsDir, 'dist', 'echarts.min.js'), path.join(assets, 'echarts.min.js'));
  copyFileSync(path.join(echartsDir, 'LICENSE'), path.join(assets, 'echarts.LICENSE.txt'));
  // Inside a <script> element only "</" can end it early; \u003c keeps the JSON intact.
  const optionsJson = JSON.stringify(options).replace(/</g, '\\u003c');
  const page = [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<title>outbox-bench results</title>',
    '<!-- Generated by `npm run bench:report` from results/README.md and results/charts/*.json; do not edit by hand. -->',
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    html,
    raw,
    `<script type="application/json" id="chart-options">${optionsJson}</script>`,
    '<script src="assets/echarts.min.js"></script>',
    `<script>${PAGE_SCRIPT}</script>`,
    '</body>',
    '</html>',
    '',
  ].join('\n');
  writeFileSync(path.join(dir, 'index.html'), page);
  return page;
}
