import { parseSnippet } from "../lib/snippet";

/** A search snippet with crm's `<mark>` highlights and nothing else rendered as markup. */
export function Snippet({ text }: { text: string }) {
  return (
    <span className="snippet">
      {parseSnippet(text).map((part, i) => (part.highlighted ? <mark key={i}>{part.text}</mark> : <span key={i}>{part.text}</span>))}
    </span>
  );
}
