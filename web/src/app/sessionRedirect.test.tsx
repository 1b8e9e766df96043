import { afterEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { AppRoutes } from "./routes";
import { json, manager, renderWith } from "../test/render";

afterEach(() => vi.unstubAllGlobals());

describe("an ended session", () => {
  it("sends the user to sign in and brings them back where they were", async () => {
    let signedIn = false;
    const fetchMock = vi.fn(async (request: Request) => {
      const url = new URL(request.url);
      if (url.pathname === "/api/auth/session" && request.method === "POST") {
        signedIn = true;
        expect(await request.json()).toEqual({ email: "anna@example.com", password: "secret-pass" });
        return json({ user: manager, csrf_token: "fresh" });
      }
      if (!signedIn) return json({ detail: "Not authenticated" }, 401);
      if (url.pathname === "/api/deals") return json({ items: [], next_cursor: null });
      if (url.pathname === "/api/pipeline") return json({ stages: [], open: { count: 0, amount: "0" }, won: { count: 0, amount: "0" }, lost: { count: 0, amount: "0" } });
      if (url.pathname === "/api/me") return json(manager);
      return json({ detail: "unexpected" }, 500);
    });
    vi.stubGlobal("fetch", fetchMock);

    renderWith(<AppRoutes />, { route: "/inbox?scope=mine" });

    expect(await screen.findByRole("heading", { name: "Sign in to JGGL CRM" })).toBeInTheDocument();
    expect(screen.getByText("Sign in to continue where you were.")).toBeInTheDocument();

    const user = userEvent.setup();
    await user.type(screen.getByLabelText("E-mail"), "anna@example.com");
    await user.type(screen.getByLabelText("Password"), "secret-pass");
    await user.click(screen.getByRole("button", { name: "Sign in" }));

    expect(await screen.findByRole("heading", { name: "Inbox" })).toBeInTheDocument();
    await waitFor(() => expect(screen.getByRole("radio", { name: "Mine" })).toHaveAttribute("aria-checked", "true"));
  });

  it("shows crm's refusal when the password is wrong", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => json({ detail: "Wrong e-mail or password" }, 401)));
    renderWith(<AppRoutes />, { route: "/login", user: null });
    const user = userEvent.setup();
    await user.type(screen.getByLabelText("E-mail"), "x@example.com");
    await user.type(screen.getByLabelText("Password"), "nope");
    await user.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Wrong e-mail or password.");
  });
});
