/**
 * Charts of benchmark results: ECharts renders SVG on the server, resvg turns
 * it into PNG with a font shipped in node_modules (so a machine without fonts
 * still gets labels). Nothing here writes SVG by hand.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as echarts from 'echarts';
import type { Histogram } from '../../src/latency.js';

export interface Chart {
  svg: string;
  png: Buffer;
  /** The ECharts option it was drawn from, for the interactive page (results/index.html). */
  option: Record<string, unknown>;
}

const WIDTH = 960;
const HEIGHT = 540;
const FONT = 'DejaVu Sans';

// Colour-blind-safe palette (Okabe-Ito), one colour per strategy across all charts.
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

function fontFiles(): string[] {
  const require = createRequire(import.meta.url);
  const dir = path.join(path.dirname(require.resolve('dejavu-fonts-ttf/package.json')), 'ttf');
  return [path.join(dir, 'DejaVuSans.ttf'), path.join(dir, 'DejaVuSans-Bold.ttf')];
}

/** Renders an ECharts option to SVG and PNG. */
export function render(option: echarts.EChartsCoreOption, size: { width?: number; height?: number } = {}): Chart {
  const width = size.width ?? WIDTH;
  const height = size.height ?? HEIGHT;
  const chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width, height });
  const full = { animation: false, backgroundColor: '#ffffff', color: PALETTE, textStyle: { fontFamily: FONT }, ...option };
  try {
    chart.setOption(full);
    const svg = chart.renderToSVGString();
    const png = new Resvg(svg, {
      fitTo: { mode: 'width', value: width * 2 },
      font: { fontFiles: fontFiles(), loadSystemFonts: false, defaultFontFamily: FONT },
      background: '#ffffff',
    })
      .render()
      .asPng();
    return { svg, png, option: full };
  } finally {
    // Without dispose() the chart keeps timers alive and the process never exits.
    chart.dispose();
  }
}

const title = (text: string, subtext?: string) => ({ text, subtext, left: 'center', top: 8, itemGap: 6, textStyle: { fontSize: 16 }, subtextStyle: { fontSize: 11 } });
// Below the title and its subtitle, above the plot.
const LEGEND_TOP = 62;
const LEGEND = { top: LEGEND_TOP, itemGap: 28, textStyle: { fontSize: 12 } };
const GRID_TOP = 104;

/**
 * Latency by percentile, the HdrHistogram way: x is 1/(1-p) on a log axis so
 * that 90%, 99%, 99.9% and 99.99% are evenly spaced.
 */
export function latencyByPercentile(series: { name: string; histogram: Histogram }[], chartTitle: string, subtitle?: string): Chart {
  // Rationale: 10 points per decade of 1/(1-p) from 0% to 99.99% is smooth
  // enough to show every knee without oversampling the tail.
  const points = Array.from({ length: 41 }, (_, i) => 100 * (1 - 10 ** (-i / 10)));
  const lowest = Math.min(...series.map(({ histogram }) => Math.max(0.001, histogram.getValueAtPercentile(0) / 1_000)));
  // The y axis starts at the power of ten below the fastest event, so its labels stay round.
  const yMin = 10 ** Math.floor(Math.log10(lowest));
  return render({
    title: title(chartTitle, subtitle),
    legend: LEGEND,
    grid: { left: 80, right: 40, top: GRID_TOP, bottom: 60 },
    // On the interactive page: the percentile, not its 1/(1-p) position, and each relay's latency there.
    tooltip: {
      trigger: 'axis',
      formatter: (points: { axisValue: number; marker: string; seriesName: string; value: [number, number] }[]) =>
        [`p${(100 * (1 - 1 / (points[0]?.axisValue ?? 1))).toFixed(3)}`, ...points.map((p) => `${p.marker}${p.seriesName}: ${p.value[1].toFixed(2)} ms`)].join('<br>'),
    },
    xAxis: {
      type: 'log',
      min: 1,
      max: 10_000,
      name: 'percentile',
      nameLocation: 'middle',
      nameGap: 32,
      axisLabel: { formatter: (value: number) => `${(100 * (1 - 1 / value)).toFixed(value >= 1_000 ? 2 : value >= 100 ? 1 : 0)}%` },
    },
    yAxis: { type: 'log', name: 'latency (ms)', nameLocation: 'middle', nameGap: 55, min: yMin },
    series: series.map(({ name, histogram }) => ({
      name,
      type: 'line',
      showSymbol: false,
      data: points.map((p) => [1 / (1 - p / 100), Math.max(0.001, histogram.getValueAtPercentile(p) / 1_000)]),
    })),
  });
}

export interface TimeSeries {
  name: string;
  /** [seconds, value] pairs. */
  points: [number, number][];
}

/** Throughput (left axis) and relay lag (right axis) over time. */
export function throughputAndLag(throughput: TimeSeries[], lag: TimeSeries[], chartTitle: string, lagUnit: string, subtitle?: string): Chart {
  return render({
    title: title(chartTitle, subtitle),
    legend: LEGEND,
    grid: { left: 80, right: 90, top: GRID_TOP, bottom: 60 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'value', name: 'seconds since start', nameLocation: 'middle', nameGap: 32 },
    yAxis: [
      { type: 'value', name: 'delivered events/s', nameLocation: 'middle', nameGap: 60 },
      { type: 'value', name: `relay lag (${lagUnit})`, nameLocation: 'middle', nameGap: 60, splitLine: { show: false } },
    ],
    series: [
      ...throughput.map((s) => ({ name: `${s.name} events/s`, type: 'line', showSymbol: false, data: s.points })),
      ...lag.map((s) => ({ name: `${s.name} lag`, type: 'line', yAxisIndex: 1, showSymbol: false, lineStyle: { type: 'dashed' }, data: s.points })),
    ],
  });
}

/** Grouped bars: one group per category, one bar per series. */
export function bars(categories: string[], series: { name: string; values: (number | null)[] }[], chartTitle: string, unit: string, subtitle?: string, stacked = false): Chart {
  return render({
    title: title(chartTitle, subtitle),
    legend: LEGEND,
    grid: { left: 80, right: 40, top: GRID_TOP, bottom: 70 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'category', data: categories, axisLabel: { interval: 0 } },
    yAxis: { type: 'value', name: unit, nameLocation: 'middle', nameGap: 60 },
    series: series.map((s) => ({
      name: s.name,
      type: 'bar',
      ...(stacked ? { stack: 'total' } : {}),
      label: stacked ? undefined : { show: true, position: 'top', fontSize: 10 },
      data: s.values,
    })),
  });
}

/**
 * Lines over named points (a sweep's values, evenly spaced whatever their
 * size), one per series; a missing value leaves a gap.
 */
export function categoryLines(categories: string[], series: { name: string; values: (number | null)[] }[], chartTitle: string, xName: string, yName: string, subtitle?: string): Chart {
  return render({
    title: title(chartTitle, subtitle),
    legend: LEGEND,
    grid: { left: 90, right: 40, top: GRID_TOP, bottom: 60 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'category', data: categories, name: xName, nameLocation: 'middle', nameGap: 32, axisLabel: { interval: 0 } },
    yAxis: { type: 'value', name: yName, nameLocation: 'middle', nameGap: 70 },
    series: series.map((s) => ({ name: s.name, type: 'line', showSymbol: true, connectNulls: false, data: s.values })),
  });
}

/** Plain lines over a numeric x axis (one series per strategy). */
export function lines(series: TimeSeries[], chartTitle: string, xName: string, yName: string, subtitle?: string, logY = false): Chart {
  return render({
    title: title(chartTitle, subtitle),
    legend: LEGEND,
    grid: { left: 90, right: 40, top: GRID_TOP, bottom: 60 },
    tooltip: { trigger: 'axis' },
    xAxis: { type: 'value', name: xName, nameLocation: 'middle', nameGap: 32 },
    yAxis: { type: logY ? 'log' : 'value', name: yName, nameLocation: 'middle', nameGap: 70 },
    series: series.map((s) => ({ name: s.name, type: 'line', showSymbol: false, data: s.points })),
  });
}

/**
 * Cost against latency: each series' points (x: p99 in ms on a log axis, y:
 * CPU per event) as dots, and its Pareto frontier as a line through the
 * points no other of its own beats on both.
 */
export function frontier(series: { name: string; points: { p99Ms: number; cpu: number; label: string }[]; frontier: { p99Ms: number; cpu: number }[] }[], chartTitle: string, yName: string, subtitle?: string): Chart {
  return render({
    title: title(chartTitle, subtitle),
    legend: { ...LEGEND, data: series.map((s) => s.name) },
    grid: { left: 90, right: 40, top: GRID_TOP, bottom: 60 },
    tooltip: { trigger: 'item' },
    xAxis: { type: 'log', name: 'e2e p99 (ms), log scale', nameLocation: 'middle', nameGap: 32 },
    yAxis: { type: 'value', name: yName, nameLocation: 'middle', nameGap: 70 },
    series: series.flatMap((s, i) => [
      { name: s.name, type: 'scatter', symbolSize: 9, itemStyle: { color: PALETTE[i % PALETTE.length] }, label: { show: true, position: 'right', fontSize: 10, formatter: '{b}' }, data: s.points.map((p) => ({ value: [p.p99Ms, p.cpu], name: p.label })) },
      { name: s.name, type: 'line', showSymbol: false, lineStyle: { color: PALETTE[i % PALETTE.length] }, data: s.frontier.map((p) => [p.p99Ms, p.cpu]) },
    ]),
  });
}
