import { afterEach, describe, expect, it, vi } from "vitest";
import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import { unwrap } from "../api/errors";
import { ErrorState } from "../components/states";
import { json, renderWith } from "../test/render";
import { makeQueryClient } from "./queryClient";

const SENTENCE = "Too many requests in a short time";
const SHOWN = "Too many requests in a short time. Try again in 1 s.";

/** crm as the test scripts it: each call to `path` gets the next answer; every call is recorded. */
function crm(path: string, answers: (() => Response)[]) {
  const calls: Request[] = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    if (new URL(request.url).pathname !== path) return json({ detail: "not in this test" }, 404);
    calls.push(request);
    const answer = answers[Math.min(calls.length, answers.length) - 1];
    return answer ? answer() : json({}, 500);
  });
  vi.stubGlobal("fetch", fetchImpl);
  return calls;
}

const limited = () => json({ detail: SENTENCE }, 429, { "Retry-After": "1" });

function Pipeline() {
  const pipeline = useQuery({
    queryKey: ["pipeline"],
    queryFn: async ({ signal }) => unwrap(await api.GET("/api/pipeline", { signal })),
  });
  if (pipeline.isError) return <ErrorState error={pipeline.error} />;
  return <p>{pipeline.data ? "pipeline loaded" : "loading"}</p>;
}

function TakeButton() {
  const take = useMutation({
    mutationFn: async () => unwrap(await api.POST("/api/deals/{deal_id}/take", { params: { path: { deal_id: 3 } } })),
  });
  return (
    <button type="button" onClick={() => take.mutate()}>
      take
    </button>
  );
}

function toasts(): HTMLElement {
  return screen.getAllByRole("status").find((region) => region.classList.contains("toasts")) as HTMLElement;
}

afterEach(() => vi.unstubAllGlobals());

describe("a call crm answers 429", () => {
  it("shows crm's sentence and the wait, then the page asks again once by itself", async () => {
    const calls = crm("/api/pipeline", [limited, () => json({ stages: [] })]);
    renderWith(<Pipeline />, { client: makeQueryClient() });

    expect(await within(toasts()).findByText(SENTENCE, { exact: false })).toHaveTextContent(SHOWN);
    expect(calls).toHaveLength(1);
    expect(await screen.findByText("pipeline loaded", {}, { timeout: 3000 })).toBeInTheDocument();
    expect(calls).toHaveLength(2);
  });

  it("asks again only once: a second 429 stays on the page with its sentence", async () => {
    const calls = crm("/api/pipeline", [limited]);
    renderWith(<Pipeline />, { client: makeQueryClient() });

    expect(await screen.findByRole("alert", {}, { timeout: 3000 })).toHaveTextContent(SHOWN);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(calls).toHaveLength(2);
    // One message on screen for the same refusal, however many times it came.
    expect(within(toasts()).getAllByText(SHOWN)).toHaveLength(1);
  });

  it("does not send a change again by itself: the person sees why and presses again", async () => {
    const calls = crm("/api/deals/3/take", [limited, () => json({ id: 3 })]);
    renderWith(<TakeButton />, { client: makeQueryClient() });

    await userEvent.click(screen.getByRole("button", { name: "take" }));
    expect(await within(toasts()).findByText(SHOWN)).toBeInTheDocument();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(calls).toHaveLength(1);

    await userEvent.click(screen.getByRole("button", { name: "take" }));
    await waitFor(() => expect(calls).toHaveLength(2));
  });

  it("does not wait out a long Retry-After: the refusal shows at once", async () => {
    const calls = crm("/api/pipeline", [
      () => json({ detail: "Too many login attempts; try again later" }, 429, { "Retry-After": "600" }),
    ]);
    renderWith(<Pipeline />, { client: makeQueryClient() });
    const shown = "Too many login attempts; try again later. Try again in 600 s.";
    expect(await screen.findByRole("alert")).toHaveTextContent(shown);
    expect(within(toasts()).getByText(shown)).toBeInTheDocument();
    expect(calls).toHaveLength(1);
  });
});
