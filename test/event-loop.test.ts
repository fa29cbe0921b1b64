// Queued work runs off the JS thread: the event loop keeps ticking until the read resolves.
import { randn } from '../ts';
import { describeEachDevice } from './support/reference';

describeEachDevice('event loop with work queued on %s', (device) => test('ticks while a large op runs', async () => {
  const n = device === 'sim' ? 1 << 22 : 1 << 24;
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = Date.now();
  const x = randn([n], { seed: 1, device });
  let total = x.mul(x).sum();
  for (let i = 0; i < 3; i++) total = total.add(x.mul(x).sum());
  const queuedIn = Date.now() - started;
  const value = await total.item();
  const elapsed = Date.now() - started;
  clearInterval(timer);
  expect(value / (4 * n)).toBeCloseTo(1, 1);
  // Queuing returned at once, and timers kept firing while the work ran.
  expect(queuedIn).toBeLessThan(elapsed / 2);
  expect(ticks).toBeGreaterThan(3);
}));
