import type { QueryClient } from "@tanstack/react-query";
import type { Deal, DealDetail, Message, User } from "../api/types";
import type { LiveEvent } from "./events";
import { dealKey, findCachedDeal, patchDeal, renameContact, stageRef, UNREAD_CAP, upsertDeal, type ContactRef, type DealPatchFields } from "./dealCache";

/** The shapes crm publishes (libs/common/src/jggl_common/contracts), as far as pages use them. */

export interface DealSnapshot {
  id: number;
  platform: Deal["platform"];
  stage: string;
  status: Deal["status"];
  assignee_id: number | null;
  amount: string | null;
  awaiting_reply_since: string | null;
  created_at: string;
  contact: ContactRef;
}

interface MessageEventData {
  message_id: number;
  mid?: string;
  deal_id: number;
  kind: string;
  text: string | null;
  attachments?: Record<string, unknown>[];
  sent_at?: string;
  failed_at?: string;
  deal_stage: string;
  assignee_id: number | null;
  contact: ContactRef;
  author_user_id?: number | null;
  author_label?: string | null;
  response_seconds?: number | null;
  error_code?: number | null;
  error_message?: string;
}

export const messagesKey = (dealId: number) => ["messages", dealId] as const;
export const activitiesKey = (dealId: number) => ["activities", dealId] as const;
export const tasksKey = (dealId: number) => ["tasks", dealId] as const;

type MessagesData = { items: Message[]; next_cursor?: string | null };

function fromSnapshot(client: QueryClient, snap: DealSnapshot): Deal {
  const known = findCachedDeal(client, snap.id);
  const base: Deal = known ?? {
    id: snap.id,
    contact: {
      id: snap.contact.id,
      platform: snap.contact.platform,
      external_id: snap.contact.external_id,
      name: null,
      username: snap.contact.username ?? null,
      avatar_url: snap.contact.avatar_url ?? null,
      display_name: snap.contact.display_name,
    },
    stage: stageRef(client, snap.stage),
    status: snap.status,
    amount: snap.amount,
    assignee_id: snap.assignee_id,
    assignee: null,
    platform: snap.platform,
    awaiting_reply_since: snap.awaiting_reply_since,
    sla: null,
    last_message_text: null,
    last_message_at: null,
    ai_summary: null,
    ai_intent: null,
    ai_temperature: null,
    ai_score: null,
    ai_source: null,
    created_at: snap.created_at,
    updated_at: snap.created_at,
    unread: 0,
  };
  const stage = base.stage.key === snap.stage ? base.stage : stageRef(client, snap.stage);
  return {
    ...base,
    stage,
    status: snap.status,
    amount: snap.amount,
    assignee_id: snap.assignee_id,
    assignee: snap.assignee_id === base.assignee_id ? base.assignee : null,
    awaiting_reply_since: snap.awaiting_reply_since,
    sla: snap.awaiting_reply_since ? base.sla : null,
    contact: { ...base.contact, display_name: snap.contact.display_name, avatar_url: snap.contact.avatar_url ?? base.contact.avatar_url },
  };
}

function preview(kind: string, text: string | null): string {
  return text ?? `[${kind}]`;
}

function hasMessage(client: QueryClient, dealId: number, id: number): boolean {
  return client.getQueryData<MessagesData>(messagesKey(dealId))?.items.some((m) => m.id === id) ?? false;
}

function upsertMessage(client: QueryClient, dealId: number, id: number, change: (old: Message | undefined) => Message): void {
  const data = client.getQueryData<MessagesData>(messagesKey(dealId));
  if (!data) return;
  const index = data.items.findIndex((m) => m.id === id);
  const items = [...data.items];
  if (index === -1) items.push(change(undefined));
  else items[index] = change(items[index]);
  client.setQueryData<MessagesData>(messagesKey(dealId), { ...data, items });
}

function blankMessage(d: MessageEventData, direction: "in" | "out", status: string, at: string): Message {
  return {
    id: d.message_id,
    mid: d.mid ?? null,
    direction,
    kind: d.kind,
    text: d.text,
    attachments: d.attachments ?? [],
    status,
    sent_at: at,
    reactions: {},
    is_edited: false,
    is_deleted: false,
    delivered_at: null,
    read_at: null,
    author_user_id: d.author_user_id ?? null,
    author_label: d.author_label ?? null,
    reply_to_mid: null,
    reply_to_story: null,
    quick_reply_payload: null,
    postback_payload: null,
    error_code: d.error_code ?? null,
    error_message: d.error_message ?? null,
    response_seconds: d.response_seconds ?? null,
  };
}

/** The deal a message event is about, built from the cache when no snapshot is at hand. */
function dealForMessage(client: QueryClient, d: MessageEventData): Deal | undefined {
  const known = findCachedDeal(client, d.deal_id);
  if (known) return { ...known, assignee_id: d.assignee_id, stage: known.stage.key === d.deal_stage ? known.stage : stageRef(client, d.deal_stage) };
  return undefined;
}

/**
 * Applies one live event to the query cache so open pages change in place, then asks for
 * a quiet refetch of what an event cannot carry (AI fields, timeline, counts).
 * Returns whether a list now shows a deal it only knows from the event (no last message,
 * no AI fields), so the caller refetches the lists.
 */
export function applyEvent(client: QueryClient, event: LiveEvent, me: User | null): { listsStale: boolean } {
  const data = event.data as Record<string, unknown> | null;
  if (!data) return { listsStale: false };
  let dealId: number | undefined;
  let listsStale = false;

  switch (event.type) {
    case "crm.deal.created": {
      const snap = data as unknown as DealSnapshot;
      const known = findCachedDeal(client, snap.id) !== undefined;
      listsStale = upsertDeal(client, fromSnapshot(client, snap), me) && !known;
      dealId = snap.id;
      break;
    }
    case "crm.deal.updated":
    case "crm.deal.hot_lead":
    case "crm.deal.sla_breached":
    case "crm.task.due": {
      const snap = (data as { deal: DealSnapshot }).deal;
      const known = findCachedDeal(client, snap.id) !== undefined;
      let deal = fromSnapshot(client, snap);
      if (event.type === "crm.deal.sla_breached") {
        deal = { ...deal, sla: (data as { level: string }).level === "escalation" ? "escalated" : "breached" };
      }
      if (event.type === "crm.deal.updated" && "manager_read_at" in ((data as { changes?: object }).changes ?? {})) {
        // Someone read the conversation (here or elsewhere): nothing is unread for anyone.
        deal = { ...deal, unread: 0 };
      }
      if (event.type === "crm.deal.hot_lead") {
        const hot = data as { summary: string; intent: string; provider: string };
        deal = { ...deal, ai_temperature: "hot", ai_summary: hot.summary, ai_intent: hot.intent, ai_source: hot.provider };
      }
      listsStale = upsertDeal(client, deal, me) && !known;
      dealId = snap.id;
      break;
    }
    case "crm.message.received": {
      const d = data as unknown as MessageEventData;
      const at = d.sent_at ?? event.occurred_at;
      const deal = dealForMessage(client, d);
      if (deal) {
        const unread = hasMessage(client, d.deal_id, d.message_id) ? deal.unread : Math.min(UNREAD_CAP, deal.unread + 1);
        upsertDeal(client, { ...deal, unread, last_message_text: preview(d.kind, d.text), last_message_at: at, awaiting_reply_since: deal.awaiting_reply_since ?? at }, me);
      } else listsStale = true;
      // Meta's reply window counts from the customer's latest message.
      client.setQueryData<DealDetail>(dealKey(d.deal_id), (detail) =>
        detail && (!detail.last_inbound_at || Date.parse(detail.last_inbound_at) < Date.parse(at)) ? { ...detail, last_inbound_at: at } : detail,
      );
      upsertMessage(client, d.deal_id, d.message_id, (old) => old ?? blankMessage(d, "in", "received", at));
      dealId = d.deal_id;
      break;
    }
    case "crm.message.sent": {
      const d = data as unknown as MessageEventData;
      const at = d.sent_at ?? event.occurred_at;
      // A reply answers the customer: what they wrote before it counts as read.
      const patch: DealPatchFields = { last_message_text: preview(d.kind, d.text), last_message_at: at, awaiting_reply_since: null, sla: null, unread: 0 };
      if (!patchDeal(client, d.deal_id, patch, me)) listsStale = true;
      upsertMessage(client, d.deal_id, d.message_id, (old) =>
        old
          ? { ...old, status: "sent", mid: d.mid ?? old.mid, sent_at: at, response_seconds: d.response_seconds ?? old.response_seconds }
          : blankMessage(d, "out", "sent", at),
      );
      dealId = d.deal_id;
      break;
    }
    case "crm.message.failed": {
      const d = data as unknown as MessageEventData;
      upsertMessage(client, d.deal_id, d.message_id, (old) => ({
        ...(old ?? blankMessage(d, "out", "failed", d.failed_at ?? event.occurred_at)),
        status: "failed",
        error_code: d.error_code ?? null,
        error_message: d.error_message ?? null,
      }));
      dealId = d.deal_id;
      break;
    }
    case "crm.contact.updated":
      // The customer's name or picture became known: rows, cards and headers change in place.
      if ((data as { contact?: ContactRef }).contact) renameContact(client, (data as { contact: ContactRef }).contact);
      return { listsStale: false };
    case "crm.channel.health_changed":
      // Admins only: the channels page shows the new findings.
      void client.invalidateQueries({ queryKey: ["channels"] });
      return { listsStale: false };
    default:
      return { listsStale: false };
  }

  if (dealId !== undefined) {
    void client.invalidateQueries({ queryKey: ["deal", dealId], refetchType: "active" });
    void client.invalidateQueries({ queryKey: activitiesKey(dealId), refetchType: "active" });
    if (event.type.startsWith("crm.message.")) void client.invalidateQueries({ queryKey: messagesKey(dealId), refetchType: "active" });
    if (event.type === "crm.task.due") void client.invalidateQueries({ queryKey: tasksKey(dealId) });
  }
  return { listsStale };
}
