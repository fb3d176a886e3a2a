// Prints the recipe reference table (every key, type, default, meaning) for the README.
import { recipeReference } from '../src/recipe.js';

export function recipeReferenceMarkdown(): string {
  const rows = recipeReference().map((r) => `| \`${r.path}\` | ${r.type} | ${r.default === '(required)' ? '*required*' : `\`${r.default}\``} | ${r.doc} |`);
  return ['| key | type | default | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

if (process.argv[1]?.endsWith('recipe-reference.js')) console.log(recipeReferenceMarkdown());
