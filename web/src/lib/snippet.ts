/**
 * crm's search snippets are HTML-escaped text with matches wrapped in `<mark>…</mark>`.
 * We never hand them to the DOM as HTML: the string is cut into plain-text pieces and
 * highlighted pieces, entities are decoded into text, and React escapes whatever remains.
 * Any other tag, or a `<mark` with attributes, stays visible as literal text.
 */
export interface SnippetPart {
  text: string;
  highlighted: boolean;
}

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, code: string) => {
    if (code[0] === "#") {
      const n = code[1] === "x" || code[1] === "X" ? parseInt(code.slice(2), 16) : parseInt(code.slice(1), 10);
      return Number.isFinite(n) && n > 0 && n <= 0x10ffff ? String.fromCodePoint(n) : whole;
    }
    return NAMED[code.toLowerCase()] ?? whole;
  });
}

export function parseSnippet(snippet: string): SnippetPart[] {
  const parts: SnippetPart[] = [];
  let highlighted = false;
  for (const token of snippet.split(/(<mark>|<\/mark>)/)) {
    if (token === "<mark>") highlighted = true;
    else if (token === "</mark>") highlighted = false;
    else if (token) parts.push({ text: decodeEntities(token), highlighted });
  }
  return parts;
}
