import { afterEach, describe, expect, it, vi } from "vitest";
import { screen } from "@testing-library/react";
import { json, renderWith } from "../../test/render";
import { Timeline } from "./Timeline";

afterEach(() => vi.unstubAllGlobals());

describe("the timeline", () => {
  it("names the users crm says it mentions, for a manager too", async () => {
    const timeline = {
      items: [
        {
          id: 1,
          kind: "assigned",
          actor_user_id: 1,
          actor_label: null,
          data: { from: null, to: 7 },
          created_at: "2026-12-02T09:30:00Z",
        },
      ],
      user_names: { "1": "Ada Admin", "7": "Anna" },
    };
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) =>
        new URL(request.url).pathname.endsWith("/activities") ? json(timeline) : json({ stages: [] }),
      ),
    );
    renderWith(<Timeline dealId={5} />);
    expect(await screen.findByText("Ada Admin")).toBeInTheDocument();
    expect(screen.getByText(/→ Anna/)).toBeInTheDocument();
    expect(screen.queryByText(/#1/)).toBeNull();
  });
});
