import type { Deal } from "../../api/types";

/** The deals of every loaded page, each once (a live move may briefly repeat one). */
export function uniqueDeals(pages: { items: Deal[] }[] | undefined): Deal[] {
  const seen = new Set<number>();
  const out: Deal[] = [];
  for (const page of pages ?? []) {
    for (const deal of page.items) {
      if (!seen.has(deal.id)) {
        seen.add(deal.id);
        out.push(deal);
      }
    }
  }
  return out;
}
