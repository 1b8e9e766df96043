import { describe, expect, it } from "vitest";
import type { InfiniteData } from "@tanstack/react-query";
import type { components } from "../api/schema";
import type { ContactDetail, Deal, DealDetail } from "../api/types";
import { deal, manager, pages } from "../test/exports";
import { testClient } from "../test/render";
import { dealKey, dealListKey, type DealListParams } from "./dealCache";
import { applyEvent } from "./live";

type S = components["schemas"];

const inbox: DealListParams = { status: "open", awaiting_reply: true, sort: "-last_message_at" };
const pipelineNew: DealListParams = { stage: "new", status: "open", sort: "-last_message_at" };

/** Deal 3's customer, not known yet: crm shows them by their platform id ("New customer" in the app). */
const unknown = { id: 30, platform: "messenger" as const, external_id: "1003", name: null, username: null, avatar_url: null, display_name: "1003" };

const event = (contact: Record<string, unknown>, changes: Record<string, unknown>, openDeals: unknown[]) => ({
  id: "e1",
  type: "crm.contact.updated",
  occurred_at: "2026-12-01T12:00:00Z",
  data: { contact, changes, open_deals: openDeals },
});

const olena = { id: 30, platform: "messenger", external_id: "1003", display_name: "Олена Коваль", username: null, avatar_url: "https://cdn/o.jpg" };

function listed(client: ReturnType<typeof testClient>, params: DealListParams): Deal[] {
  return client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(params))?.pages.flatMap((p) => p.items) ?? [];
}

function contactItem(id: number, contact: Partial<S["ContactItem"]> = {}): S["ContactItem"] {
  return {
    id, platform: "messenger", external_id: String(1000 + id / 10), name: null, username: null, avatar_url: null,
    display_name: `Customer ${id}`, profile_status: "fetched", first_seen_at: "2026-12-01T09:00:00Z", last_seen_at: "2026-12-01T10:00:00Z",
    ...contact,
  };
}

describe("a customer's new name in the query cache", () => {
  it("shows on the inbox row, the pipeline card and the deal header, in place and in the same order", () => {
    const client = testClient();
    const mine = deal(3, { contact: unknown, awaiting_reply_since: "2026-12-01T10:00:00Z" });
    const other = deal(4, { awaiting_reply_since: "2026-12-01T09:00:00Z" });
    client.setQueryData(dealListKey(inbox), pages([other, mine], [deal(1, { awaiting_reply_since: "2026-12-01T08:00:00Z" })]));
    client.setQueryData(dealListKey(pipelineNew), pages([mine, other]));
    client.setQueryData<DealDetail>(dealKey(3), { ...mine, last_inbound_at: null } as unknown as DealDetail);
    const untouched = client.getQueryData(dealListKey({ status: "won", sort: "-last_message_at" }));

    const { listsStale } = applyEvent(
      client,
      event(olena, { display_name: ["1003", "Олена Коваль"], avatar_url: [null, "https://cdn/o.jpg"] }, [{ id: 3, assignee_id: null }]),
      manager,
    );

    expect(listsStale).toBe(false);
    const shown = { ...unknown, name: "Олена Коваль", display_name: "Олена Коваль", avatar_url: "https://cdn/o.jpg" };
    expect(listed(client, inbox).map((d) => [d.id, d.contact.display_name])).toEqual([
      [4, "Customer 4"],
      [3, "Олена Коваль"],
      [1, "Customer 1"],
    ]);
    expect(listed(client, inbox)[1]?.contact).toEqual(shown);
    expect(listed(client, pipelineNew)[0]?.contact).toEqual(shown);
    expect(client.getQueryData<DealDetail>(dealKey(3))?.contact).toEqual(shown);
    // Other customers' rows are the same objects: nothing else re-renders.
    expect(listed(client, inbox)[0]).toBe(other);
    expect(client.getQueryData(dealListKey({ status: "won", sort: "-last_message_at" }))).toBe(untouched);
  });

  it("updates the contacts list, the contact's page and search results, and refetches nothing", () => {
    const client = testClient();
    const contacts: InfiniteData<S["ContactPage"]> = {
      pages: [{ items: [contactItem(40), contactItem(30, { external_id: "1003", display_name: "1003", profile_status: "pending" })], next_cursor: null }],
      pageParams: [null],
    };
    client.setQueryData(["contacts", "", ""], contacts);
    const page = { ...contactItem(30, { external_id: "1003", display_name: "1003" }), deals: [] } as ContactDetail;
    client.setQueryData(["contact", 30], page);
    client.setQueryData(["contact", 40], { ...contactItem(40), deals: [] });
    client.setQueryData(["search", "1003"], { items: [{ ...deal(3, { contact: unknown }), snippet: null }] });

    applyEvent(client, event(olena, { display_name: ["1003", "Олена Коваль"] }, []), manager);

    const rows = client.getQueryData<InfiniteData<S["ContactPage"]>>(["contacts", "", ""])?.pages[0]?.items;
    expect(rows?.map((c) => [c.id, c.display_name, c.avatar_url])).toEqual([
      [40, "Customer 40", null],
      [30, "Олена Коваль", "https://cdn/o.jpg"],
    ]);
    expect(client.getQueryData<ContactDetail>(["contact", 30])).toMatchObject({ name: "Олена Коваль", display_name: "Олена Коваль", avatar_url: "https://cdn/o.jpg" });
    expect(client.getQueryData<ContactDetail>(["contact", 40])?.display_name).toBe("Customer 40");
    expect(client.getQueryData<S["SearchResults"]>(["search", "1003"])?.items[0]?.contact.display_name).toBe("Олена Коваль");
    const invalidated = client.getQueryCache().getAll().filter((query) => query.state.isInvalidated);
    expect(invalidated).toEqual([]);
  });

  it("keeps an Instagram username as the username, not as a name", () => {
    const client = testClient();
    client.setQueryData(dealListKey(inbox), pages([deal(3, { contact: { ...unknown, platform: "instagram" } })]));

    applyEvent(
      client,
      event(
        { id: 30, platform: "instagram", external_id: "1003", display_name: "@shop.lover", username: "shop.lover", avatar_url: null },
        { display_name: ["1003", "@shop.lover"], username: [null, "shop.lover"] },
        [{ id: 3, assignee_id: 7 }],
      ),
      manager,
    );

    expect(listed(client, inbox)[0]?.contact).toMatchObject({ name: null, username: "shop.lover", display_name: "@shop.lover" });
  });
});
