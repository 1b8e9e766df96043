import { describe, expect, it } from "vitest";
import { screen } from "@testing-library/react";
import { message } from "../../test/fixtures";
import { renderWith } from "../../test/render";
import { MessageBubble } from "./MessageBubble";

const show = (m: ReturnType<typeof message>) => renderWith(<ol><MessageBubble message={m} /></ol>);

describe("a message in the history", () => {
  it("marks a reply typed in Meta's own apps as Meta inbox", () => {
    show(message(1, { direction: "out", status: "sent", author_label: "Meta inbox", text: "from the Page inbox" }));
    expect(screen.getByText("Meta inbox")).toBeInTheDocument();
    expect(screen.getByText("from the Page inbox")).toBeInTheDocument();
  });

  it("shows deletions and edits as such, and reactions", () => {
    show(message(2, { is_deleted: true, text: "secret" }));
    expect(screen.getByText("The customer deleted this message.")).toBeInTheDocument();
    expect(screen.queryByText("secret")).not.toBeInTheDocument();
    show(message(3, { is_edited: true, text: "fixed", reactions: { "1003": { reaction: "love", emoji: "❤️", at: 1 } } }));
    expect(screen.getByText(/edited/)).toBeInTheDocument();
    expect(screen.getByLabelText("Reactions")).toHaveTextContent("❤️");
  });

  it("renders attachments by type and refuses non-http links", () => {
    show(
      message(4, {
        kind: "image",
        text: null,
        attachments: [
          { type: "image", url: "https://cdn.example/a.jpg" },
          { type: "location", url: null, title: "Office", lat: 55.75, long: 37.61 },
          { type: "file", url: "javascript:alert(1)", title: "price.pdf" },
        ],
      }),
    );
    expect(screen.getByRole("img", { name: "Image" })).toHaveAttribute("src", "https://cdn.example/a.jpg");
    expect(screen.getByRole("link", { name: "Open the map" }).getAttribute("href")).toContain("mlat=55.75");
    expect(screen.getByText(/price\.pdf/)).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "Download" })).not.toBeInTheDocument();
  });

  it("shows a failed reply with Meta's error", () => {
    show(message(5, { direction: "out", status: "failed", error_code: 10, error_message: "Outside the allowed window" }));
    expect(screen.getByText(/not sent: Outside the allowed window \(10\)/)).toBeInTheDocument();
  });

  it("explains story replies and mentions", () => {
    show(message(6, { kind: "story_reply", text: "nice!", reply_to_story: { url: "https://cdn.example/story" } }));
    expect(screen.getByText("Replied to your story.")).toBeInTheDocument();
    show(message(7, { kind: "story_mention", text: null, attachments: [{ type: "story_mention", url: "https://cdn.example/s" }] }));
    expect(screen.getAllByText(/Mentioned you in their story/).length).toBeGreaterThan(0);
  });
});
