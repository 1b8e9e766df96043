import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { DealDetail } from "../../api/types";
import { deal } from "../../test/fixtures";
import { json, renderWith } from "../../test/render";
import { messagesKey } from "../../lib/live";
import { ReplyBox } from "./ReplyBox";

const now = Date.parse("2026-12-02T12:00:00Z");
const detail = { ...deal(1), conversation_id: 1, channel_id: 1, last_inbound_at: null } as DealDetail;
const lastWrote = (at: string | null): DealDetail => ({ ...detail, last_inbound_at: at });

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(now);
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("the reply box", () => {
  it("shows how long the 24-hour window stays open", () => {
    renderWith(<ReplyBox deal={lastWrote("2026-12-02T09:30:00Z")} />);
    expect(screen.getByText("Meta's 24-hour window: 21 h 30 min left to reply.")).toBeInTheDocument();
  });

  it("counts from the conversation's last customer message, whatever history is loaded", () => {
    // No messages are loaded at all: the deal answer's last_inbound_at decides.
    renderWith(<ReplyBox deal={lastWrote("2026-12-02T11:00:00Z")} />);
    expect(screen.getByText("Meta's 24-hour window: 23 h 0 min left to reply.")).toBeInTheDocument();
  });

  it("explains the HUMAN_AGENT case past 24 hours", () => {
    renderWith(<ReplyBox deal={lastWrote("2026-11-30T12:00:00Z")} />);
    expect(screen.getByText(/HUMAN_AGENT tag if your admin enabled it \(5 d 0 h left\)/)).toBeInTheDocument();
  });

  it("shows crm's refusal sentence on 409 and keeps the draft", async () => {
    const refusal = "The customer last wrote more than 7 days ago; Meta no longer accepts a reply.";
    vi.stubGlobal("fetch", vi.fn(async () => json({ detail: refusal }, 409)));
    renderWith(<ReplyBox deal={lastWrote("2026-11-20T12:00:00Z")} />);
    expect(screen.getByText(/More than 7 days since the customer wrote/)).toBeInTheDocument();
    const user = userEvent.setup();
    await user.type(screen.getByLabelText("Your reply"), "Still interested?");
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(refusal);
    expect(screen.getByLabelText("Your reply")).toHaveValue("Still interested?");
  });

  it("sends once with an idempotency key and shows the reply as queued", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => {
        bodies.push(await request.json());
        return json({ id: 99, mid: null, direction: "out", kind: "text", text: "Hi!", attachments: [], status: "queued", sent_at: "2026-12-02T12:00:00Z", reactions: {}, is_edited: false, is_deleted: false, delivered_at: null, read_at: null, author_user_id: 7, author_label: null, reply_to_mid: null, reply_to_story: null, quick_reply_payload: null, postback_payload: null, error_code: null, error_message: null, response_seconds: null, messaging_type: "RESPONSE", tag: null, idempotency_key: "k", error_subcode: null, send_attempts: 0 }, 202);
      }),
    );
    const { client } = renderWith(<ReplyBox deal={lastWrote("2026-12-02T11:00:00Z")} />);
    client.setQueryData(messagesKey(1), { items: [], next_cursor: null });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText("Your reply"), "Hi!");
    await user.keyboard("{Control>}{Enter}{/Control}");
    await waitFor(() => expect(screen.getByLabelText("Your reply")).toHaveValue(""));
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toMatchObject({ text: "Hi!", idempotency_key: expect.any(String) });
    expect(client.getQueryData<{ items: { status: string }[] }>(messagesKey(1))?.items).toEqual([expect.objectContaining({ id: 99, status: "queued" })]);
  });

  it("sends a file by link with its kind", async () => {
    const bodies: unknown[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => {
        bodies.push(await request.json());
        return json({ detail: "queued elsewhere" }, 409);
      }),
    );
    renderWith(<ReplyBox deal={lastWrote("2026-12-02T11:00:00Z")} />);
    const user = userEvent.setup();
    await user.click(screen.getByRole("button", { name: "Attach by link" }));
    await user.selectOptions(screen.getByLabelText("Kind"), "file");
    await user.type(screen.getByLabelText("Link (https://…)"), "https://cdn.example/price.pdf");
    await user.click(screen.getByRole("button", { name: "Send" }));
    await screen.findByRole("alert");
    expect(bodies[0]).toMatchObject({ text: null, attachments: [{ type: "file", url: "https://cdn.example/price.pdf" }] });
  });
});
