import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/repo.js';

// The shape docs/architecture.md promises, checked on every run: a folder per concern with no
// import cycle between folders, small files, and nothing in the product that reaches the tests,
// the benchmarks or the demo.

const SRC = join(REPO, 'src');
/** The longest a file of src/ may be (issue 23: every file a reader takes in at once). */
const MAX_LINES = 450;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The relative imports of a file (static and dynamic), resolved to absolute paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found = [...text.matchAll(/(?:from\s+|import\()\s*'(\.{1,2}\/[^']+)'/g)];
  return found.map((m) => resolve(dirname(file), (m[1] as string).replace(/\.js$/, '.ts')));
}

/** The top folder of src/ a path lies in (`master` for src/master/master.ts). */
function folderOf(path: string): string {
  return relative(SRC, path).split(sep)[0] as string;
}

/** Folder → the folders it imports. */
function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file);
    const edges = graph.get(from) ?? new Set<string>();
    graph.set(from, edges);
    for (const target of importsOf(file)) {
      const to = folderOf(target);
      if (to !== from) edges.add(to);
    }
  }
  return graph;
}

/** A cycle in `graph`, as the folders along it, or undefined when there is none. */
function findCycle(graph: Map<string, Set<string>>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle !== undefined) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle !== undefined) return cycle;
  }
  return undefined;
}

describe('the shape of src/', () => {
  it('has no import cycle between its folders', () => {
    const graph = folderGraph();
    expect(graph.size).toBeGreaterThan(10);
    expect(findCycle(graph), 'a cycle of folders importing each other').toBeUndefined();
  });

  it('finds a cycle when there is one (the check itself)', () => {
    const graph = new Map([
      ['deploy', new Set(['canary'])],
      ['canary', new Set(['probes', 'deploy'])],
      ['probes', new Set<string>()],
    ]);
    expect(findCycle(graph)).toEqual(['deploy', 'canary', 'deploy']);
  });

  it(`keeps every file under ${MAX_LINES} lines`, () => {
    const long = sourceFiles(SRC)
      .map((file) => ({
        file: relative(REPO, file),
        lines: readFileSync(file, 'utf8').split('\n').length,
      }))
      .filter(({ lines }) => lines > MAX_LINES);
    expect(long).toEqual([]);
  });

  it('never reaches outside src/ (the tests, the benchmarks and the demo live in test/)', () => {
    const outside = sourceFiles(SRC).flatMap((file) =>
      importsOf(file)
        .filter((target) => !target.startsWith(`${SRC}${sep}`))
        .map((target) => `${relative(REPO, file)} -> ${relative(REPO, target)}`),
    );
    expect(outside).toEqual([]);
  });

  it('spells the pidfile pair in one place', () => {
    const spelled = sourceFiles(SRC)
      .filter((file) => !file.endsWith(join('protocol', 'files.ts')))
      .filter((file) => /OLDBIN_SUFFIX|'\.oldbin'/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(REPO, file));
    expect(spelled).toEqual([]);
  });
});
