import type { InfiniteData, QueryClient } from "@tanstack/react-query";
import type { Deal, DealDetail, StageRef, User } from "../api/types";
import type { components } from "../api/schema";

type DealPage = components["schemas"]["DealPage"];
type ContactBrief = components["schemas"]["ContactBrief"];
type ContactPage = components["schemas"]["ContactPage"];
type ContactDetail = components["schemas"]["ContactDetail"];
type SearchResults = components["schemas"]["SearchResults"];
export type DealSort = "-last_message_at" | "last_message_at" | "-created_at" | "created_at" | "-amount" | "amount";

/** The filters a deal list was asked with; part of its query key `["deals", params]`. */
export interface DealListParams {
  stage?: string;
  status?: "open" | "won" | "lost";
  assignee_id?: number;
  unassigned?: boolean;
  awaiting_reply?: boolean;
  platform?: "messenger" | "instagram";
  sla?: "breached" | "escalated";
  sort: DealSort;
}

export const dealListKey = (params: DealListParams) => ["deals", params] as const;
export const dealKey = (id: number) => ["deal", id] as const;

/** Whether a deal belongs in a list asked with `params`, as crm would decide. */
export function matchesList(deal: Deal, params: DealListParams, me: User | null): boolean {
  if (me?.role === "manager" && deal.assignee_id !== null && deal.assignee_id !== me.id) return false;
  if (params.status && deal.status !== params.status) return false;
  if (params.stage && deal.stage.key !== params.stage) return false;
  if (params.unassigned && deal.assignee_id !== null) return false;
  if (params.assignee_id !== undefined && deal.assignee_id !== params.assignee_id) return false;
  if (params.platform && deal.platform !== params.platform) return false;
  if (params.sla && deal.sla !== params.sla) return false;
  if (params.awaiting_reply === true && !deal.awaiting_reply_since) return false;
  if (params.awaiting_reply === false && deal.awaiting_reply_since) return false;
  return true;
}

function sortValue(deal: Deal, field: string): number | null {
  if (field === "amount") return deal.amount === null ? null : Number(deal.amount);
  const raw = field === "created_at" ? deal.created_at : deal.last_message_at;
  return raw ? Date.parse(raw) : null;
}

/** Negative when `a` comes first in a list sorted by `sort` (missing values last). */
export function compareDeals(a: Deal, b: Deal, sort: DealSort): number {
  const desc = sort.startsWith("-");
  const field = desc ? sort.slice(1) : sort;
  const va = sortValue(a, field);
  const vb = sortValue(b, field);
  if (va !== vb) {
    if (va === null) return 1;
    if (vb === null) return -1;
    return desc ? vb - va : va - vb;
  }
  return b.id - a.id;
}

/** Puts `deal` where it belongs in a paged list (or takes it out), keeping page borders. */
export function placeInPages(data: InfiniteData<DealPage>, deal: Deal, belongs: boolean, sort: DealSort): InfiniteData<DealPage> {
  const pages = data.pages.map((page) => ({ ...page, items: page.items.filter((d) => d.id !== deal.id) }));
  if (belongs) {
    for (const [i, page] of pages.entries()) {
      const last = page.items[page.items.length - 1];
      const isLast = i === pages.length - 1;
      const fitsHere = !last || compareDeals(deal, last, sort) < 0;
      if (fitsHere || (isLast && !page.next_cursor)) {
        const at = page.items.findIndex((d) => compareDeals(deal, d, sort) < 0);
        const items = [...page.items];
        items.splice(at === -1 ? items.length : at, 0, deal);
        pages[i] = { ...page, items };
        break;
      }
    }
  }
  return { ...data, pages };
}

/** crm counts unread messages up to this many; the app shows more than 99 as "99+". */
export const UNREAD_CAP = 100;

/** The unread count as a badge shows it. */
export function unreadLabel(count: number): string {
  return count > 99 ? "99+" : String(count);
}

/** The deal as some cached list or detail has it. */
export function findCachedDeal(client: QueryClient, id: number): Deal | undefined {
  const detail = client.getQueryData<DealDetail>(dealKey(id));
  if (detail) return detail;
  for (const [, data] of client.getQueriesData<InfiniteData<DealPage>>({ queryKey: ["deals"] })) {
    for (const page of data?.pages ?? []) {
      const found = page.items.find((d) => d.id === id);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * Applies a change to a deal everywhere it is cached: each list gains it, loses it or
 * reorders it according to its own filters; the detail is merged. Returns whether some
 * cached list now shows it.
 */
export function upsertDeal(client: QueryClient, next: Deal, me: User | null): boolean {
  let shown = false;
  for (const [key, data] of client.getQueriesData<InfiniteData<DealPage>>({ queryKey: ["deals"] })) {
    if (!data) continue;
    const params = key[1] as DealListParams;
    const belongs = matchesList(next, params, me);
    shown ||= belongs;
    client.setQueryData(key, placeInPages(data, next, belongs, params.sort));
  }
  const detail = client.getQueryData<DealDetail>(dealKey(next.id));
  if (detail) client.setQueryData<DealDetail>(dealKey(next.id), { ...detail, ...next });
  return shown;
}

export type DealPatchFields = Partial<Omit<Deal, "id">>;

export function patchDeal(client: QueryClient, id: number, patch: DealPatchFields, me: User | null): Deal | undefined {
  const current = findCachedDeal(client, id);
  if (!current) return undefined;
  const next: Deal = { ...pickDeal(current), ...patch };
  upsertDeal(client, next, me);
  return next;
}

/** Only the list fields, so a detail's extra fields never leak into list caches. */
function pickDeal(deal: Deal): Deal {
  const {
    id, contact, stage, status, amount, assignee_id, assignee, platform, awaiting_reply_since, sla,
    last_message_text, last_message_at, ai_summary, ai_intent, ai_temperature, ai_score, ai_source,
    created_at, updated_at, unread,
  } = deal;
  return {
    id, contact, stage, status, amount, assignee_id, assignee, platform, awaiting_reply_since, sla,
    last_message_text, last_message_at, ai_summary, ai_intent, ai_temperature, ai_score, ai_source,
    created_at, updated_at, unread,
  };
}

/** A stage reference for a key, from the cached pipeline when it is there. */
export function stageRef(client: QueryClient, key: string): StageRef {
  const pipeline = client.getQueryData<{ stages: { id: number; key: string; name: string }[] }>(["pipeline"]);
  const stage = pipeline?.stages.find((s) => s.key === key);
  return stage ? { id: stage.id, key: stage.key, name: stage.name } : { id: 0, key, name: key };
}

/** Every list and detail cache of deals, to put back if an optimistic change fails. */
export function snapshotDeals(client: QueryClient): [readonly unknown[], unknown][] {
  return [
    ...client.getQueriesData({ queryKey: ["deals"] }),
    ...client.getQueriesData({ queryKey: ["deal"] }),
  ];
}

export function restoreDeals(client: QueryClient, snapshot: [readonly unknown[], unknown][]): void {
  for (const [key, data] of snapshot) client.setQueryData(key, data);
}

/** A customer as crm's events carry them (`ContactRef` in libs/common's contracts). */
export interface ContactRef {
  id: number;
  platform: Deal["platform"];
  external_id: string;
  /** The name, else @username, else the platform id. */
  display_name: string;
  username?: string | null;
  avatar_url?: string | null;
}

/** `contact` as `ref` shows the customer now; the name is the display name unless that is the @username or the id. */
export function withContact<C extends ContactBrief>(contact: C, ref: ContactRef): C {
  const username = ref.username ?? null;
  const named = ref.display_name !== ref.external_id && (!username || ref.display_name !== `@${username}`);
  return { ...contact, name: named ? ref.display_name : null, username, avatar_url: ref.avatar_url ?? null, display_name: ref.display_name };
}

/** `items` with `change` applied, or the same array when no item is the customer's. */
function changed<T>(items: T[], mine: (item: T) => boolean, change: (item: T) => T): T[] {
  return items.some(mine) ? items.map((item) => (mine(item) ? change(item) : item)) : items;
}

/**
 * A customer's new name or picture (`crm.contact.updated`) wherever they are cached: the
 * deal lists (inbox rows, pipeline cards), the open deals' headers, the contact lists and
 * page, and search results. Changed in place, nothing is refetched; caches that do not
 * show the customer are left untouched.
 */
export function renameContact(client: QueryClient, ref: ContactRef): void {
  const ofDeal = (deal: { contact: ContactBrief }) => deal.contact.id === ref.id;
  const onDeal = <D extends { contact: ContactBrief }>(deal: D): D => ({ ...deal, contact: withContact(deal.contact, ref) });
  const isContact = (contact: ContactBrief) => contact.id === ref.id;
  const onContact = <C extends ContactBrief>(contact: C): C => withContact(contact, ref);

  for (const [key, data] of client.getQueriesData<InfiniteData<DealPage>>({ queryKey: ["deals"] })) {
    if (!data?.pages.some((page) => page.items.some(ofDeal))) continue;
    client.setQueryData(key, { ...data, pages: data.pages.map((page) => ({ ...page, items: changed(page.items, ofDeal, onDeal) })) });
  }
  for (const [key, detail] of client.getQueriesData<DealDetail>({ queryKey: ["deal"] })) {
    if (detail && ofDeal(detail)) client.setQueryData(key, onDeal(detail));
  }
  for (const [key, data] of client.getQueriesData<InfiniteData<ContactPage>>({ queryKey: ["contacts"] })) {
    if (!data?.pages.some((page) => page.items.some(isContact))) continue;
    client.setQueryData(key, { ...data, pages: data.pages.map((page) => ({ ...page, items: changed(page.items, isContact, onContact) })) });
  }
  const contact = client.getQueryData<ContactDetail>(["contact", ref.id]);
  if (contact) client.setQueryData(["contact", ref.id], onContact(contact));
  for (const [key, results] of client.getQueriesData<SearchResults>({ queryKey: ["search"] })) {
    if (results?.items.some(ofDeal)) client.setQueryData(key, { ...results, items: changed(results.items, ofDeal, onDeal) });
  }
}
