import { afterEach, describe, expect, it, vi } from "vitest";
import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { Route, Routes } from "react-router";
import { deal } from "../../test/fixtures";
import { json, renderWith } from "../../test/render";
import SearchPage from "./SearchPage";

afterEach(() => vi.unstubAllGlobals());

describe("search", () => {
  it("searches as you type, highlights matches and opens a result from the keyboard", async () => {
    const queries: string[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (request: Request) => {
        const q = new URL(request.url).searchParams.get("q") ?? "";
        queries.push(q);
        return json({
          items: [
            { ...deal(1, { contact: { ...deal(1).contact, display_name: "Иван" } }), snippet: "хочу <mark>диван</mark> &amp; кресло", rank: 0.9 },
            { ...deal(2), snippet: "синий <mark>диван</mark>", rank: 0.5 },
          ],
        });
      }),
    );
    renderWith(
      <Routes>
        <Route path="/search" element={<SearchPage />} />
        <Route path="/deals/:id" element={<p>deal page</p>} />
      </Routes>,
      { route: "/search" },
    );
    const user = userEvent.setup();
    await user.type(screen.getByRole("combobox", { name: "Search deals" }), "диван");

    const options = await screen.findAllByRole("option");
    expect(options).toHaveLength(2);
    expect(options[0]).toHaveTextContent("хочу диван & кресло");
    expect(options[0]?.querySelector("mark")?.textContent).toBe("диван");
    expect(queries.at(-1)).toBe("диван");
    expect(queries.length).toBeLessThanOrEqual(2);

    await user.keyboard("{ArrowDown}");
    expect(options[1]).toHaveAttribute("aria-selected", "true");
    await user.keyboard("{Enter}");
    expect(await screen.findByText("deal page")).toBeInTheDocument();
  });
});
