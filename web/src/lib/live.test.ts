import { describe, expect, it } from "vitest";
import type { InfiniteData } from "@tanstack/react-query";
import type { Deal, DealDetail, Message } from "../api/types";
import { deal, manager, message, pages, pipeline, snapshotOf } from "../test/exports";
import { testClient } from "../test/render";
import { dealKey, dealListKey, type DealListParams } from "./dealCache";
import { applyEvent, messagesKey } from "./live";

const awaiting: DealListParams = { status: "open", awaiting_reply: true, sort: "-last_message_at" };
const others: DealListParams = { status: "open", awaiting_reply: false, sort: "-last_message_at" };
const newColumn: DealListParams = { stage: "new", status: "open", sort: "-last_message_at" };
const qualifiedColumn: DealListParams = { stage: "qualified", status: "open", sort: "-last_message_at" };

function ids(client: ReturnType<typeof testClient>, params: DealListParams): number[] {
  return client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(params))?.pages.flatMap((p) => p.items.map((d) => d.id)) ?? [];
}

const event = (type: string, data: unknown) => ({ id: "e1", type, occurred_at: "2026-12-01T12:00:00Z", data });

describe("live events in the query cache", () => {
  it("moves a deal to the top of 'awaiting reply' when the customer writes, and appends the message", () => {
    const client = testClient();
    client.setQueryData(dealListKey(awaiting), pages([deal(1, { awaiting_reply_since: "2026-12-01T10:01:00Z" })]));
    client.setQueryData(dealListKey(others), pages([deal(2), deal(3)]));
    client.setQueryData(messagesKey(3), { items: [message(30)], next_cursor: null });

    applyEvent(
      client,
      event("crm.message.received", {
        message_id: 31, mid: "m.31", deal_id: 3, conversation_id: 3, kind: "text", text: "Is it in stock?",
        attachments: [], sent_at: "2026-12-01T12:00:00Z", is_first_message: false, deal_stage: "new", assignee_id: null,
        contact: { id: 30, platform: "messenger", external_id: "1003", display_name: "Customer 3" },
      }),
      manager,
    );

    expect(ids(client, awaiting)).toEqual([3, 1]);
    expect(ids(client, others)).toEqual([2]);
    const moved = client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages[0]?.items[0];
    expect(moved?.last_message_text).toBe("Is it in stock?");
    expect(moved?.awaiting_reply_since).toBe("2026-12-01T12:00:00Z");
    const history = client.getQueryData<{ items: Message[] }>(messagesKey(3))?.items;
    expect(history?.map((m) => [m.id, m.direction, m.text])).toEqual([
      [30, "in", "message 30"],
      [31, "in", "Is it in stock?"],
    ]);
  });

  it("turns a queued reply sent, and takes the deal out of 'awaiting reply'", () => {
    const client = testClient();
    client.setQueryData(dealListKey(awaiting), pages([deal(4, { awaiting_reply_since: "2026-12-01T10:00:00Z", sla: "breached" })]));
    client.setQueryData(dealListKey(others), pages([deal(2)]));
    client.setQueryData(messagesKey(4), { items: [message(40), message(41, { direction: "out", status: "queued", mid: null })], next_cursor: null });

    applyEvent(
      client,
      event("crm.message.sent", {
        message_id: 41, mid: "m.41", deal_id: 4, conversation_id: 4, kind: "text", text: "Yes!", attachments: [],
        sent_at: "2026-12-01T12:00:00Z", response_seconds: 60, deal_stage: "new", assignee_id: 7,
        contact: { id: 40, platform: "messenger", external_id: "1004", display_name: "Customer 4" },
      }),
      manager,
    );

    expect(ids(client, awaiting)).toEqual([]);
    expect(ids(client, others)).toEqual([4, 2]);
    const reply = client.getQueryData<{ items: Message[] }>(messagesKey(4))?.items[1];
    expect(reply).toMatchObject({ status: "sent", mid: "m.41" });
  });

  it("marks a reply failed with Meta's error", () => {
    const client = testClient();
    client.setQueryData(messagesKey(5), { items: [message(51, { direction: "out", status: "queued" })], next_cursor: null });
    applyEvent(
      client,
      event("crm.message.failed", {
        message_id: 51, deal_id: 5, conversation_id: 5, kind: "text", text: "hi", reason: "window", error_code: 10,
        error_message: "Outside the allowed window", attempts: 1, failed_at: "2026-12-01T12:00:00Z", deal_stage: "new",
        assignee_id: null, contact: { id: 50, platform: "messenger", external_id: "1005", display_name: "C5" },
      }),
      manager,
    );
    expect(client.getQueryData<{ items: Message[] }>(messagesKey(5))?.items[0]).toMatchObject({ status: "failed", error_code: 10, error_message: "Outside the allowed window" });
  });

  it("moves a pipeline card between columns when another user changes the stage", () => {
    const client = testClient();
    client.setQueryData(["pipeline"], pipeline);
    client.setQueryData(dealListKey(newColumn), pages([deal(6), deal(7)]));
    client.setQueryData(dealListKey(qualifiedColumn), pages([deal(8, { stage: { id: 2, key: "qualified", name: "Qualified" } })]));

    applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(6), { stage: "qualified" }), changes: { stage: ["new", "qualified"] }, actor_user_id: 1 }), manager);

    expect(ids(client, newColumn)).toEqual([7]);
    expect(ids(client, qualifiedColumn)).toEqual([8, 6]);
    const card = client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(qualifiedColumn))?.pages[0]?.items.find((d) => d.id === 6);
    expect(card?.stage).toEqual({ id: 2, key: "qualified", name: "Qualified" });
  });

  it("drops a deal from a manager's lists once another manager takes it", () => {
    const client = testClient();
    client.setQueryData(dealListKey(others), pages([deal(9), deal(2)]));
    applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(9), { assignee_id: 99 }), changes: { assignee_id: [null, 99] } }), manager);
    expect(ids(client, others)).toEqual([2]);
  });

  it("adds a new deal to a list and marks an SLA breach", () => {
    const client = testClient();
    client.setQueryData(dealListKey(awaiting), pages([deal(1, { awaiting_reply_since: "2026-12-01T10:01:00Z" })]));
    const fresh = deal(12, { awaiting_reply_since: "2026-12-01T11:00:00Z" });
    const result = applyEvent(client, event("crm.deal.created", snapshotOf(fresh)), manager);
    expect(result.listsStale).toBe(true);
    expect(ids(client, awaiting)).toContain(12);

    applyEvent(client, event("crm.deal.sla_breached", { deal: snapshotOf(fresh), level: "breach", waiting_since: fresh.awaiting_reply_since, waited_minutes: 31, sla_minutes: 30 }), manager);
    const row = client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages.flatMap((p) => p.items).find((d) => d.id === 12);
    expect(row?.sla).toBe("breached");
  });

  it("asks for a refetch only when a list shows a deal known from the event alone", () => {
    const client = testClient();
    client.setQueryData(dealListKey(newColumn), pages([deal(6)]));
    const elsewhere = deal(20, { stage: { id: 2, key: "qualified", name: "Qualified" } });
    expect(applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(elsewhere), changes: {} }), manager).listsStale).toBe(false);
    expect(applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(21)), changes: {} }), manager).listsStale).toBe(true);
    expect(applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(6)), changes: {} }), manager).listsStale).toBe(false);
  });

  it("counts a customer's new message as unread in every list, once, and moves the deal's reply window", () => {
    const client = testClient();
    const waiting = deal(3, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 2 });
    client.setQueryData(dealListKey(awaiting), pages([waiting]));
    client.setQueryData(dealKey(3), { ...waiting, last_inbound_at: "2026-12-01T10:00:00Z" } as DealDetail);
    client.setQueryData(messagesKey(3), { items: [message(30)], next_cursor: null });
    const received = event("crm.message.received", {
      message_id: 31, mid: "m.31", deal_id: 3, conversation_id: 3, kind: "text", text: "Hello?", attachments: [],
      sent_at: "2026-12-01T12:00:00Z", is_first_message: false, deal_stage: "new", assignee_id: null,
      contact: { id: 30, platform: "messenger", external_id: "1003", display_name: "Customer 3" },
    });
    applyEvent(client, received, manager);
    // The same event again (a resumed stream) does not count twice.
    applyEvent(client, received, manager);
    const row = client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages[0]?.items[0];
    expect(row?.unread).toBe(3);
    expect(client.getQueryData<DealDetail>(dealKey(3))?.last_inbound_at).toBe("2026-12-01T12:00:00Z");
  });

  it("stops counting at crm's cap", () => {
    const client = testClient();
    client.setQueryData(dealListKey(awaiting), pages([deal(3, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 100 })]));
    applyEvent(client, event("crm.message.received", {
      message_id: 32, deal_id: 3, conversation_id: 3, kind: "text", text: "?", sent_at: "2026-12-01T12:00:00Z",
      is_first_message: false, deal_stage: "new", assignee_id: null,
      contact: { id: 30, platform: "messenger", external_id: "1003", display_name: "Customer 3" },
    }), manager);
    expect(client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages[0]?.items[0]?.unread).toBe(100);
  });

  it("clears the count when someone reads the deal, or a reply is sent", () => {
    const client = testClient();
    client.setQueryData(dealListKey(awaiting), pages([deal(4, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 2 }), deal(3, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 4 })]));
    const unread = () => client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages.flatMap((p) => p.items.map((d) => [d.id, d.unread])) ?? [];

    applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(3, { awaiting_reply_since: "2026-12-01T10:00:00Z" })), changes: { manager_read_at: [null, "2026-12-01T11:00:00Z"] }, actor_user_id: 8 }), manager);
    expect(unread()).toEqual([[4, 2], [3, 0]]);
    // Another change leaves the count alone.
    applyEvent(client, event("crm.deal.updated", { deal: snapshotOf(deal(4, { awaiting_reply_since: "2026-12-01T10:00:00Z" })), changes: { amount: [null, "10.00"] } }), manager);
    expect(unread()).toEqual([[4, 2], [3, 0]]);

    applyEvent(client, event("crm.message.sent", {
      message_id: 41, mid: "m.41", deal_id: 4, conversation_id: 4, kind: "text", text: "Yes!", sent_at: "2026-12-01T12:00:00Z",
      deal_stage: "new", assignee_id: null, contact: { id: 40, platform: "messenger", external_id: "1004", display_name: "Customer 4" },
    }), manager);
    expect(client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(others))).toBeUndefined();
    expect(unread()).toEqual([[3, 0]]);
  });

  it("ignores events it does not know", () => {
    const client = testClient();
    expect(applyEvent(client, event("crm.something.else", { x: 1 }), manager)).toEqual({ listsStale: false });
  });
});
