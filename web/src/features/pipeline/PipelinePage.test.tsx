import { afterEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { deal, pipeline } from "../../test/fixtures";
import { json, renderWith } from "../../test/render";
import PipelinePage from "./PipelinePage";
import { shiftTotals, targetPatch } from "./useMoveDeal";

afterEach(() => vi.unstubAllGlobals());

const qualified = { id: 2, key: "qualified", name: "Qualified" };

function crm(patchAnswer: Promise<Response>) {
  const patches: unknown[] = [];
  const fetchMock = vi.fn(async (request: Request) => {
    const url = new URL(request.url);
    if (url.pathname === "/api/pipeline") return json(pipeline);
    if (url.pathname === "/api/deals") {
      const stage = url.searchParams.get("stage");
      const items = stage === "new" ? [deal(6, { amount: "60" }), deal(7)] : stage === "qualified" ? [deal(8, { stage: qualified })] : [];
      return json({ items, next_cursor: null });
    }
    if (url.pathname === "/api/deals/6" && request.method === "PATCH") {
      patches.push(await request.json());
      return patchAnswer;
    }
    return json({ detail: "unexpected" }, 500);
  });
  vi.stubGlobal("fetch", fetchMock);
  return patches;
}

const column = (name: string) => screen.getByRole("region", { name });
const names = (region: HTMLElement) => within(region).queryAllByRole("link").map((a) => a.textContent);

describe("moving a card on the pipeline", () => {
  it("moves at once, and puts the card back with crm's reason when the change is refused", async () => {
    let answer: (r: Response) => void = () => undefined;
    const patches = crm(new Promise<Response>((resolve) => (answer = resolve)));
    renderWith(<PipelinePage />);

    await waitFor(() => expect(names(column("New"))).toEqual(["Customer 6", "Customer 7"]));
    expect(names(column("Qualified"))).toEqual(["Customer 8"]);

    const user = userEvent.setup();
    await user.selectOptions(screen.getByLabelText("Move Customer 6 to"), "stage:qualified");

    // Optimistic: already in its new column, counts and sums moved too.
    await waitFor(() => expect(names(column("Qualified"))).toEqual(["Customer 8", "Customer 6"]));
    expect(names(column("New"))).toEqual(["Customer 7"]);
    expect(within(column("Qualified")).getByText("2 · 110")).toBeInTheDocument();
    expect(patches).toEqual([{ stage: "qualified" }]);

    answer(json({ detail: "This stage is switched off." }, 409));

    await waitFor(() => expect(names(column("New"))).toEqual(["Customer 6", "Customer 7"]));
    expect(names(column("Qualified"))).toEqual(["Customer 8"]);
    expect(within(column("New")).getByText("2 · 100")).toBeInTheDocument();
    expect(await screen.findByText("Customer 6 could not be moved and is back where it was: This stage is switched off.")).toBeInTheDocument();
  });

  it("keeps the move when crm accepts it", async () => {
    crm(Promise.resolve(json({ ...deal(6, { amount: "60", stage: qualified }), conversation_id: 6, channel_id: 1 })));
    renderWith(<PipelinePage />);
    await waitFor(() => expect(names(column("New"))).toEqual(["Customer 6", "Customer 7"]));
    await userEvent.setup().selectOptions(screen.getByLabelText("Move Customer 6 to"), "stage:qualified");
    await waitFor(() => expect(names(column("Qualified"))).toContain("Customer 6"));
    expect(names(column("New"))).toEqual(["Customer 7"]);
  });
});

describe("a move's request", () => {
  it("reopens a closed deal dropped on a stage, and carries the loss reason", () => {
    expect(targetPatch({ kind: "stage", key: "new" }, { status: "open" })).toEqual({ stage: "new" });
    expect(targetPatch({ kind: "stage", key: "new" }, { status: "won" })).toEqual({ stage: "new", status: "open" });
    expect(targetPatch({ kind: "lost", reason: "price" }, { status: "open" })).toEqual({ status: "lost", lost_reason: "price" });
  });
});

describe("column totals", () => {
  it("shift a card's amount from one column to another", () => {
    const moved = shiftTotals(pipeline, deal(6, { amount: "60" }), "new", "won");
    expect(moved.stages[0]).toMatchObject({ count: 1, amount: "40" });
    expect(moved.won).toEqual({ count: 1, amount: "60" });
  });
});
