/**
 * Turns a bench TypeScript entry into plain JavaScript in the temporary directory, so the
 * process under test runs on bare `node`: the tsx loader keeps a hooks thread alive that
 * adds about 35 MB of RSS, which would be charged to the reference proxy.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import ts from 'typescript';

/** Package imports are pinned to the files they resolve to from here, the repository. */
function pinPackageImports(code: string): string {
  return code.replace(/from '([^'.][^']*)'/g, (whole, specifier: string) =>
    specifier.startsWith('node:') ? whole : `from '${import.meta.resolve(specifier)}'`,
  );
}

export function transpileEntry(sourcePath: string, outPath: string): void {
  const { outputText } = ts.transpileModule(readFileSync(sourcePath, 'utf8'), {
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true,
    },
  });
  writeFileSync(outPath, pinPackageImports(outputText));
}
