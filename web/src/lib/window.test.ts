import { describe, expect, it } from "vitest";
import { messagingWindow } from "./window";

const at = Date.parse("2026-12-02T12:00:00Z");
const hoursAgo = (h: number) => new Date(at - h * 3_600_000).toISOString();

describe("Meta's messaging window", () => {
  it("is open for 24 hours with the time left counted down", () => {
    expect(messagingWindow(hoursAgo(1), at)).toEqual({ phase: "open", remainingMs: 23 * 3_600_000 });
    expect(messagingWindow(hoursAgo(23.5), at).remainingMs).toBe(30 * 60_000);
  });
  it("needs the human agent tag from 24 hours to 7 days, then closes", () => {
    expect(messagingWindow(hoursAgo(24), at).phase).toBe("human_agent");
    expect(messagingWindow(hoursAgo(24 * 7 - 1), at)).toEqual({ phase: "human_agent", remainingMs: 3_600_000 });
    expect(messagingWindow(hoursAgo(24 * 7), at).phase).toBe("closed");
    expect(messagingWindow(null, at).phase).toBe("no_message");
  });
});
