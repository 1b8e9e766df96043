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

  it.each([
    ["en", "Task reassigned: Call back — Petro → Anna", "Task reopened: Quote", "Task reassigned: Quote — Anna → Unassigned"],
    ["ru", "Задача передана: Call back — Petro → Anna", "Задача снова открыта: Quote", "Задача передана: Quote — Anna → Без ответственного"],
  ] as const)("says which task changed hands, from whom to whom (%s)", async (language, given, reopened, letGo) => {
    const entry = (id: number, kind: string, data: Record<string, unknown>) => ({
      id,
      kind,
      actor_user_id: 1,
      actor_label: null,
      data,
      created_at: `2026-12-02T09:3${id}:00Z`,
    });
    const timeline = {
      items: [
        entry(1, "task_reassigned", { task_id: 4, title: "Call back", from: 8, to: 7, reason: "deal_assigned" }),
        entry(2, "task_reopened", { task_id: 5, title: "Quote" }),
        entry(3, "task_reassigned", { task_id: 5, title: "Quote", from: 7, to: null }),
      ],
      user_names: { "1": "Ada Admin", "7": "Anna", "8": "Petro" },
    };
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) =>
        new URL(request.url).pathname.endsWith("/activities") ? json(timeline) : json({ stages: [] }),
      ),
    );
    renderWith(<Timeline dealId={5} />, { language });
    expect(await screen.findByText(given)).toBeInTheDocument();
    expect(screen.getByText(reopened)).toBeInTheDocument();
    expect(screen.getByText(letGo)).toBeInTheDocument();
  });
});
