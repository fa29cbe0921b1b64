// Feedback: the progress line (rewritten in place on a terminal, periodic plain lines otherwise) and the loss-curve
// SVG (axes, ticks, one polyline per series placed by its values, legend).
import { Writable } from 'stream';

import { lossCurveSvg, Progress } from '../../ts';
import type { StepMetrics } from '../../ts';

const metrics = (step: number, loss: number): StepMetrics => ({ step, lr: 1e-3, loss, terms: { 'radio.clip.features': loss / 2 }, gradNorm: 0.5, skipped: false, images: step * 8, elapsed: step * 0.5 });

function sink(isTTY: boolean): { stream: Writable & { isTTY: boolean }; text: () => string } {
  let text = '';
  const stream = Object.assign(new Writable({ write: (c: Buffer, _e: string, cb: () => void) => ((text += String(c)), cb()) }), { isTTY });
  return { stream, text: () => text };
}

test('on a terminal one line is rewritten per step, with rate, ETA, lr and terms; messages keep their own line', () => {
  const { stream, text } = sink(true);
  const p = new Progress({ stream, totalSteps: 10, firstStep: 0 });
  // 2 steps/s (elapsed 0.5 s per step): 9 steps left after the first is 4.5 s, shown rounded.
  p.step(metrics(1, 2));
  p.step(metrics(2, 1.5));
  p.message('checkpoint written');
  p.step(metrics(3, 1.25));
  p.done();
  expect(text()).toBe(
    '\r\x1b[Kstep 1/10  16.0 img/s  ETA 5s  lr 1.00e-3  loss 2.0000  |g| 0.5000  radio.clip.features 1.0000' +
      '\r\x1b[Kstep 2/10  16.0 img/s  ETA 4s  lr 1.00e-3  loss 1.5000  |g| 0.5000  radio.clip.features 0.7500' +
      '\r\x1b[Kcheckpoint written\n' +
      '\r\x1b[Kstep 3/10  16.0 img/s  ETA 4s  lr 1.00e-3  loss 1.2500  |g| 0.5000  radio.clip.features 0.6250\n',
  );
});

test('elsewhere plain lines: the first step, every `every` steps and the last; a skipped step is always reported', () => {
  const { stream, text } = sink(false);
  const p = new Progress({ stream, totalSteps: 7, firstStep: 0, every: 3 });
  for (let s = 1; s <= 7; s++) p.step(s === 5 ? { ...metrics(s, NaN), skipped: true, gradNorm: NaN } : metrics(s, 1 / s));
  const lines = text().trim().split('\n');
  expect(lines.map((l) => l.split('  ')[0])).toEqual(['step 1/7', 'step 3/7', 'step 5: skipped (loss NaN, gradient norm NaN); weights and optimizer state unchanged', 'step 6/7', 'step 7/7']);
});

test('loss SVG: axes, ticks, one polyline per series at its values, an escaped legend; log scale over decades', () => {
  const svg = lossCurveSvg(
    [
      { name: 'total', points: [[1, 10], [2, 1], [3, 0.1]] },
      { name: 'a<b>&"c"', points: [[1, 5], [2, NaN], [3, 0.5]] },
    ],
    { title: 'run', width: 800, height: 480 },
  );
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="800" height="480"')).toBe(true);
  expect(svg.trim().endsWith('</svg>')).toBe(true);
  expect(svg).toContain('loss (log scale)');
  const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]+)"/g)].map((m) => m[1].split(' ').map((p) => p.split(',').map(Number)));
  expect(polylines.length).toBe(2);
  // Plot area: x 70..600, y 40..430; y spans 10^-1..10^1 on a log axis, so 10, 1 and 0.1 sit at the top, middle, bottom.
  expect(polylines[0]).toEqual([[70, 40], [335, 235], [600, 430]]);
  expect(polylines[1].length).toBe(2);
  expect(svg).toContain('a&lt;b&gt;&amp;&quot;c&quot;');
  for (const t of ['>0.1<', '>1<', '>10<']) expect(svg).toContain(t);
  const linear = lossCurveSvg([{ name: 'x', points: [[0, 2], [10, 3]] }]);
  expect(linear).not.toContain('log scale');
  expect(linear).toMatch(/>0<\/text>[^]*>3<\/text>/);
});
