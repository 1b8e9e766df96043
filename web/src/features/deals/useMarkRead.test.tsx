import { afterEach, describe, expect, it, vi } from "vitest";
import { waitFor } from "@testing-library/react";
import type { InfiniteData } from "@tanstack/react-query";
import type { Deal, DealDetail } from "../../api/types";
import { deal, pages } from "../../test/fixtures";
import { json, renderWith, Wrapper } from "../../test/render";
import { dealKey, dealListKey, type DealListParams } from "../../lib/dealCache";
import { useMarkRead } from "./mutations";

const awaiting: DealListParams = { status: "open", awaiting_reply: true, sort: "-last_message_at" };

function Open({ d }: { d: { id: number; unread: number } }) {
  useMarkRead(d);
  return null;
}

afterEach(() => vi.unstubAllGlobals());

describe("opening a deal", () => {
  it("marks it read for the team and clears its count in every list", async () => {
    const calls: string[] = [];
    const read = { ...deal(5, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 0 }), conversation_id: 5, channel_id: 1, last_inbound_at: "2026-12-01T10:00:00Z" } as DealDetail;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => {
        calls.push(`${request.method} ${new URL(request.url).pathname}`);
        return json(read);
      }),
    );
    const { client, rerender } = renderWith(<Open d={{ id: 5, unread: 2 }} />);
    client.setQueryData(dealListKey(awaiting), pages([deal(5, { awaiting_reply_since: "2026-12-01T10:00:00Z", unread: 2 })]));
    await waitFor(() => expect(calls).toEqual(["POST /api/deals/5/read"]));
    await waitFor(() => expect(client.getQueryData<DealDetail>(dealKey(5))?.unread).toBe(0));
    expect(client.getQueryData<InfiniteData<{ items: Deal[] }>>(dealListKey(awaiting))?.pages[0]?.items[0]?.unread).toBe(0);

    // Nothing unread: nothing is asked.
    rerender(
      <Wrapper client={client}>
        <Open d={{ id: 5, unread: 0 }} />
      </Wrapper>,
    );
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toHaveLength(1);
  });
});
