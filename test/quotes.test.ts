/**
 * Figures README.md and docs/ quote from results/ (bench/report/quotes.ts):
 *  - every quoted figure is what its summary says today;
 *  - an edited copy of results/ makes the check name the figure that moved;
 *  - a path reaches one value, or several through an aggregate, and a marker
 *    that names nothing, or starts a line, is an error rather than a figure;
 *  - a derived figure is its formula evaluated over quoted figures;
 *  - a generated passage (a table) is written whole between its markers.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadSummaries, type Summary } from '../bench/report/kit.js';
import { quotingFiles, renderQuotes, syncQuotes } from '../bench/report/quotes.js';
import { PROJECT_ROOT } from '../src/config.js';

const RESULTS = path.join(PROJECT_ROOT, 'results');

const SYNTHETIC = {
  extra: {
    strategies: [
      { name: 'cdc', search: { sustainedRate: 20_971 } },
      { name: 'polling', search: { sustainedRate: 17_000 } },
      { name: 'ours: skip-locked', search: { sustainedRate: 20_971 } },
      { name: 'polling, batch 10', search: { sustainedRate: 780 } },
    ],
    runs: [
      { strategy: 'cdc', relay: { eventsPerSec: 103_996, cpu: 9 } },
      { strategy: 'cdc', relay: { eventsPerSec: 105_830, cpu: 9.2 } },
      { strategy: 'cdc', relay: { eventsPerSec: 102_257, cpu: 9 }, window: { sitting: 2 } },
    ],
  },
} as unknown as Summary;

const render = (text: string) => renderQuotes(text, new Map([['x', SYNTHETIC]]), 'page.md');

describe('figures quoted from results/', () => {
  it('holds in README.md and docs/ exactly what results/ says, and quotes something', () => {
    const markers = quotingFiles(PROJECT_ROOT).reduce((n, file) => n + (readFileSync(file, 'utf8').match(/<!-- result /g)?.length ?? 0), 0);
    assert.ok(markers >= 5, `${markers} quoted figures`);
    assert.deepEqual(syncQuotes(PROJECT_ROOT, loadSummaries(RESULTS), { write: false }), []);
  });

  it('names the figure that moved when results/ says something else (an edited copy)', () => {
    const summaries = loadSummaries(RESULTS);
    const saturation = structuredClone(summaries.get('saturation')!) as unknown as { extra: { strategies: { name: string; search: { sustainedRate: number } }[] } };
    saturation.extra.strategies.find((s) => s.name === 'cdc')!.search.sustainedRate = 12_345;
    summaries.set('saturation', saturation as unknown as Summary);
    assert.deepEqual(syncQuotes(PROJECT_ROOT, summaries, { write: false }), [
      { file: path.join('docs', 'capacity.md'), marker: 'saturation extra.strategies[name=cdc].search.sustainedRate', holds: '20,971', results: '12,345' },
    ]);
  });

  it('reads one value, or several through an aggregate, in the report\'s number format', () => {
    const text =
      'cdc <!-- result x extra.strategies[name=cdc].search.sustainedRate -->1<!-- /result -->, ' +
      'drain <!-- result x extra.runs[strategy=cdc].relay.eventsPerSec|median -->2<!-- /result --> at ' +
      '<!-- result x extra.runs[strategy=cdc].relay.cpu|max:2 -->3<!-- /result --> CPU-s, first <!-- result x extra.runs[0].relay.cpu -->4<!-- /result -->';
    const { text: written, drift } = render(text);
    assert.equal(
      written,
      'cdc <!-- result x extra.strategies[name=cdc].search.sustainedRate -->20,971<!-- /result -->, ' +
        'drain <!-- result x extra.runs[strategy=cdc].relay.eventsPerSec|median -->103,996<!-- /result --> at ' +
        '<!-- result x extra.runs[strategy=cdc].relay.cpu|max:2 -->9.20<!-- /result --> CPU-s, first <!-- result x extra.runs[0].relay.cpu -->9.0<!-- /result -->',
    );
    assert.deepEqual(drift.map((d) => d.results), ['20,971', '103,996', '9.20', '9.0']);
    // A selector's field may be nested: the run of sitting 2 alone.
    assert.equal(render('sitting 2: <!-- result x extra.runs[strategy=cdc,window.sitting=2].relay.eventsPerSec -->0<!-- /result -->').drift[0]?.results, '102,257');
  });

  it('writes a derived figure from its formula over quoted figures, and refuses a formula it cannot read', () => {
    const { text, drift } = render('bound <!-- derive:0 1000000 / {x extra.runs[strategy=cdc].relay.cpu@median} -->1<!-- /derive --> events/s, sum <!-- derive (1 + 2) * {x extra.runs[0].relay.cpu} - 0.5 -->0<!-- /derive -->');
    assert.equal(text, 'bound <!-- derive:0 1000000 / {x extra.runs[strategy=cdc].relay.cpu@median} -->111,111<!-- /derive --> events/s, sum <!-- derive (1 + 2) * {x extra.runs[0].relay.cpu} - 0.5 -->26.5<!-- /derive -->');
    assert.deepEqual(drift.map((d) => d.results), ['111,111', '26.5']);
    assert.equal(render('a <!-- result x extra.strategies[name=ours:%20skip-locked].search.sustainedRate -->1<!-- /result -->').drift[0]?.results, '20,971', 'a space in a value, written %20');
    assert.equal(render('a <!-- result x extra.strategies[name=polling%2C%20batch%2010].search.sustainedRate -->1<!-- /result -->').drift[0]?.results, '780', 'a comma in a value, written %2C');
    assert.equal(render('a <!-- result x extra.runs[*].relay.eventsPerSec@max -->1<!-- /result -->').drift[0]?.results, '105,830', 'every item of an array');
    const unreadable = (t: string) => render(t).drift.map((d) => d.results)[0] ?? '';
    assert.match(unreadable('a <!-- derive 1 / {x extra.nothing} -->1<!-- /derive -->'), /unreadable: nothing there/);
    assert.match(unreadable('a <!-- derive 1 / (2 -->1<!-- /derive -->'), /unreadable: unbalanced parentheses/);
    assert.match(unreadable('a <!-- derive 1 / 0 -->1<!-- /derive -->'), /unreadable: .* is not a finite number/);
    assert.match(unreadable('a <!-- derive 2 ** 3 -->1<!-- /derive -->'), /unreadable: cannot read "\*"/);
  });

  it('refuses a marker that names nothing, several values without an aggregate, another folder, or starts a line', () => {
    const unreadable = (text: string) => render(text).drift.map((d) => d.results);
    assert.match(unreadable('a <!-- result x extra.nothing -->1<!-- /result -->')[0]!, /unreadable: nothing there/);
    assert.match(unreadable('a <!-- result x extra.runs[strategy=cdc].relay.cpu -->1<!-- /result -->')[0]!, /unreadable: 3 values there: end the path with \|median/);
    assert.match(unreadable('a <!-- result y extra -->1<!-- /result -->')[0]!, /unreadable: no results\/y\/summary\.json/);
    assert.match(unreadable('a\n<!-- result x extra.runs[0].relay.cpu -->9.0<!-- /result -->')[0]!, /unreadable: it starts a line/);
    // An unreadable marker keeps its text: nothing is written over it.
    assert.equal(render('a <!-- result x extra.nothing -->1<!-- /result -->').text, 'a <!-- result x extra.nothing -->1<!-- /result -->');
  });

  it('writes a passage a scenario generates (the frontier\'s decision table) whole between its markers, and names it when results/ says otherwise', () => {
    const probe = { nsPerOp: 3_000, readings: [3_000, 3_010], settled: true };
    const run = (subject: string, relay: string, setting: string, p99: number, total: number) => ({
      subject,
      relay,
      setting,
      shape: '1x2000',
      repeat: 1,
      e2eMs: { p50: p99 / 2, p90: p99, p99, p999: p99, max: p99 },
      cpuSecondsPerMillion: { total },
      window: { sitting: 1, round: 1, startedAt: '2026-12-07T00:00:00.000Z', seconds: 30, probeBefore: probe, probeAfter: probe, stealPercent: 0 },
    });
    const frontier = {
      extra: { anchor: 'cdc, delay 0 ms', shapes: ['1x2000'], repeats: 1, sittings: [], runs: [run('cdc, delay 0 ms', 'cdc', 'delay 0 ms', 18, 900), run('polling, interval 500 ms', 'polling', 'interval 500 ms', 600, 450)] },
    } as unknown as Summary;
    const summaries = new Map([['frontier', frontier]]);
    const page = 'Which relay:\n\n<!-- block frontier decisions -->\nan old table\n<!-- /block -->\n\nAfter it.\n';
    const { text, drift } = renderQuotes(page, summaries, 'page.md');
    assert.deepEqual(drift.map((d) => [d.marker, d.holds]), [['block frontier decisions', 'an old table\n']]);
    assert.match(text, /^<!-- block frontier decisions -->\n\n\| your load \| p99 budget \|/m);
    assert.match(text, /\| 1 event per transaction, 2,000 events\/s \| 20 ms \| cdc \| delay 0 ms \| 18\.0 \| 900 /);
    assert.match(text, /\| 1 event per transaction, 2,000 events\/s \| 1,000 ms \| polling \| interval 500 ms \| 600 \| 450 /);
    assert.ok(text.startsWith('Which relay:\n\n') && text.endsWith('|\n\n<!-- /block -->\n\nAfter it.\n'), text);
    assert.deepEqual(renderQuotes(text, summaries, 'page.md').drift, [], 'once written it holds');
    // The same page against a frontier whose cdc run was dearer: the block is named as moved.
    const dearer = structuredClone(frontier) as unknown as { extra: { runs: { cpuSecondsPerMillion: { total: number } }[] } };
    dearer.extra.runs[0]!.cpuSecondsPerMillion.total = 950;
    assert.deepEqual(renderQuotes(text, new Map([['frontier', dearer as unknown as Summary]]), 'page.md').drift.map((d) => d.marker), ['block frontier decisions']);
    const unknown = renderQuotes('<!-- block frontier nonesuch -->\n<!-- /block -->\n', summaries, 'page.md');
    assert.match(unknown.drift[0]?.results ?? '', /^unreadable: no block "nonesuch" of results\/frontier/);
    assert.equal(unknown.text, '<!-- block frontier nonesuch -->\n<!-- /block -->\n', 'an unreadable block is left as it was');
  });
});
