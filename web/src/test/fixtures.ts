import type { InfiniteData } from "@tanstack/react-query";
import type { Deal, Message, Pipeline } from "../api/types";
import type { components } from "../api/schema";

export function deal(id: number, patch: Partial<Deal> = {}): Deal {
  return {
    id,
    contact: { id: id * 10, platform: "messenger", external_id: String(1000 + id), name: null, username: null, avatar_url: null, display_name: `Customer ${id}` },
    stage: { id: 1, key: "new", name: "New" },
    status: "open",
    amount: null,
    assignee_id: null,
    assignee: null,
    platform: "messenger",
    awaiting_reply_since: null,
    sla: null,
    last_message_text: "hello",
    last_message_at: `2026-12-01T10:0${id % 10}:00Z`,
    ai_summary: null,
    ai_intent: null,
    ai_temperature: null,
    ai_score: null,
    ai_source: null,
    created_at: "2026-12-01T09:00:00Z",
    updated_at: "2026-12-01T09:00:00Z",
    unread: 0,
    ...patch,
  };
}

export function pages(...items: Deal[][]): InfiniteData<components["schemas"]["DealPage"]> {
  return {
    pages: items.map((page, i) => ({ items: page, next_cursor: i < items.length - 1 ? `c${i}` : null })),
    pageParams: items.map((_, i) => (i === 0 ? null : `c${i - 1}`)),
  };
}

export function message(id: number, patch: Partial<Message> = {}): Message {
  return {
    id,
    mid: `m.${id}`,
    direction: "in",
    kind: "text",
    text: `message ${id}`,
    attachments: [],
    status: "received",
    sent_at: "2026-12-01T10:00:00Z",
    reactions: {},
    is_edited: false,
    is_deleted: false,
    delivered_at: null,
    read_at: null,
    author_user_id: null,
    author_label: null,
    reply_to_mid: null,
    reply_to_story: null,
    quick_reply_payload: null,
    postback_payload: null,
    error_code: null,
    error_message: null,
    response_seconds: null,
    ...patch,
  };
}

export const pipeline: Pipeline = {
  stages: [
    { id: 1, key: "new", name: "New", position: 1, is_active: true, count: 2, amount: "100" },
    { id: 2, key: "qualified", name: "Qualified", position: 2, is_active: true, count: 1, amount: "50" },
  ],
  open: { count: 3, amount: "150" },
  won: { count: 0, amount: "0" },
  lost: { count: 0, amount: "0" },
};

export function snapshotOf(d: Deal, patch: Record<string, unknown> = {}) {
  return {
    id: d.id,
    conversation_id: d.id,
    channel_id: 1,
    platform: d.platform,
    stage: d.stage.key,
    status: d.status,
    assignee_id: d.assignee_id,
    amount: d.amount,
    lead_source: null,
    lost_reason: null,
    awaiting_reply_since: d.awaiting_reply_since,
    created_at: d.created_at,
    contact: { id: d.contact.id, platform: d.contact.platform, external_id: d.contact.external_id, display_name: d.contact.display_name },
    ...patch,
  };
}
