// Two charts drawn by hand in SVG (no library): stacked bars over time, and ranked horizontal bars. Labels are
// text nodes like everything else, so an agent's name cannot become markup here either.

import { el, svg } from './dom.js';

const WIDTH = 720;

/** The largest value rounded up to 1, 2 or 5 times a power of ten, so the axis reads well. */
function niceMax(value) {
  if (value <= 1) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return value;
}

/**
 * Stacked bars: `slots` are `{ label, values: { key: n } }` left to right, `series` the `{ key, label }` stacked
 * bottom to top (each drawn with class `bar-<key>`). Every `tickEvery`-th slot is labelled on the x axis.
 */
export function stackedBars(slots, series, { height = 220, tickEvery = 10, title = '' } = {}) {
  const left = 44;
  const right = 8;
  const top = 10;
  const bottom = 24;
  const plotW = WIDTH - left - right;
  const plotH = height - top - bottom;
  const totals = slots.map((s) => series.reduce((sum, k) => sum + (s.values[k.key] || 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const y = (v) => top + plotH - (v / max) * plotH;
  const step = plotW / Math.max(1, slots.length);
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, class: 'chart', role: 'img', 'aria-label': title });
  for (const tick of [0, max / 2, max]) {
    chart.append(
      svg('line', { x1: left, x2: WIDTH - right, y1: y(tick), y2: y(tick), class: 'gridline' }),
      svg('text', { x: left - 6, y: y(tick) + 4, class: 'axis', 'text-anchor': 'end' }, String(Math.round(tick * 10) / 10)),
    );
  }
  slots.forEach((slot, i) => {
    const x = left + i * step;
    let base = 0;
    for (const s of series) {
      const value = slot.values[s.key] || 0;
      if (value > 0) {
        chart.append(
          svg(
            'rect',
            { x: x + 0.5, width: Math.max(1, step - 1), y: y(base + value), height: y(base) - y(base + value), class: 'bar bar-' + s.key },
            svg('title', {}, `${slot.label}: ${value} ${s.label}`),
          ),
        );
      }
      base += value;
    }
    if (i % tickEvery === 0) {
      chart.append(svg('text', { x, y: height - 6, class: 'axis' }, slot.label));
    }
  });
  return chart;
}

/** A legend for `series`, as colour swatches and names. */
export function legend(series) {
  return el(
    'div',
    { class: 'legend' },
    series.map((s) => el('span', {}, el('span', { class: 'swatch bar-' + s.key }), s.label)),
  );
}

/** Ranked horizontal bars of `items` (`{ label, value }`, largest first), each drawn with class `cls`. */
export function rankedBars(items, cls, { title = '' } = {}) {
  const row = 24;
  const labelW = 230;
  const valueW = 50;
  const height = Math.max(1, items.length) * row + 4;
  const max = Math.max(1, ...items.map((i) => i.value));
  const chart = svg('svg', { viewBox: `0 0 ${WIDTH} ${height}`, class: 'chart ranked', role: 'img', 'aria-label': title });
  items.forEach((item, i) => {
    const y = 2 + i * row;
    const w = ((WIDTH - labelW - valueW) * item.value) / max;
    const label = item.label.length > 32 ? item.label.slice(0, 31) + '…' : item.label;
    chart.append(
      svg('text', { x: labelW - 8, y: y + 16, class: 'label', 'text-anchor': 'end' }, svg('title', {}, item.label), label),
      svg('rect', { x: labelW, y: y + 3, width: Math.max(1, w), height: row - 8, class: 'bar ' + cls }),
      svg('text', { x: labelW + w + 6, y: y + 16, class: 'value' }, String(item.value)),
    );
  });
  return chart;
}
