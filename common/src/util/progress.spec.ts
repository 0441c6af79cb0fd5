import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StderrProgress } from './progress.js';

function logStream(): { stream: NodeJS.WriteStream; lines: string[] } {
  const lines: string[] = [];
  const stream = {
    isTTY: false,
    write: (text: string) => {
      lines.push(...text.split('\n').filter(Boolean));
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, lines };
}

describe('StderrProgress in a log (not a terminal)', () => {
  it('writes a line every 10 % and the last one', () => {
    const { stream, lines } = logStream();
    const progress = new StderrProgress('job', 'steps', stream, Number.POSITIVE_INFINITY);
    for (let done = 1; done <= 100; done++) progress.update(done, 100);
    assert.deepEqual(
      lines.map((l) => Number(/^job (\d+)/.exec(l)![1])),
      [1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100],
    );
    assert.match(lines.at(-1)!, /^job 100\/100 steps \(100%\)/);
  });

  it('also writes when the interval has passed, so a long run shows it is alive', () => {
    const { stream, lines } = logStream();
    const progress = new StderrProgress('job', 'steps', stream, 0);
    for (let done = 1; done <= 5; done++) progress.update(done, 100_000);
    assert.equal(lines.length, 5);
    assert.match(lines[4]!, /^job 5\/100000 steps/);
  });
});
